// CPU description from /proc/cpuinfo: vendor, feature flags (named as QEMU and
// libvirt name them, so a VM spec and a node label use the same word), and the
// named QEMU CPU models whose features the host has in full.

export interface CpuDescription {
  readonly vendor: string;
  readonly modelName: string;
  /** QEMU feature names, sorted. */
  readonly features: readonly string[];
  /** Named QEMU models this host can run, oldest first. */
  readonly models: readonly string[];
  /** The newest named model the host can run (what host-model resolves to), if any. */
  readonly hostModel: string | undefined;
}

// Linux cpuinfo flag → QEMU feature name, where the two differ beyond "_" → "-".
const FLAG_TO_QEMU: ReadonlyMap<string, string> = new Map([
  ['pni', 'pni'],
  ['sse4_1', 'sse4.1'],
  ['sse4_2', 'sse4.2'],
  ['tsc_deadline_timer', 'tsc-deadline'],
  ['avx512vbmi', 'avx512vbmi'],
  ['avx512_vbmi2', 'avx512vbmi2'],
  ['avx512_bitalg', 'avx512bitalg'],
  ['avx512_ifma', 'avx512ifma'],
  ['avx512ifma', 'avx512ifma'],
  ['avx512_vnni', 'avx512-vnni'],
  ['avx512_bf16', 'avx512-bf16'],
  ['avx512_fp16', 'avx512-fp16'],
  ['avx512_vpopcntdq', 'avx512-vpopcntdq'],
  ['amx_bf16', 'amx-bf16'],
  ['amx_tile', 'amx-tile'],
  ['amx_int8', 'amx-int8'],
  ['sha_ni', 'sha-ni'],
  ['lahf_lm', 'lahf-lm'],
  ['cmp_legacy', 'cmp-legacy'],
  ['cr8_legacy', 'cr8legacy'],
  ['misalignsse', 'misalignsse'],
  ['3dnowprefetch', '3dnowprefetch'],
  ['pclmulqdq', 'pclmulqdq'],
  ['xsaveerptr', 'xsaveerptr'],
]);

/** The QEMU/libvirt name of a feature given either a Linux cpuinfo flag or a QEMU name. */
export function qemuFeatureName(flag: string): string {
  const lower = flag.toLowerCase();
  return FLAG_TO_QEMU.get(lower) ?? lower.replaceAll('_', '-');
}

// Named x86 models (QEMU's names) and the features, as QEMU names them, each needs
// beyond the baseline of x86-64 (cx8, cmov, mmx, sse, sse2, lm, nx, syscall).
// tsc-deadline is left out: KVM emulates it, and AMD hosts do not list it.
// Each entry extends the one it names (defined above it); the TSX variants add hle/rtm.
interface ModelSpec {
  readonly name: string;
  readonly extends?: string;
  readonly features: readonly string[];
}

const MODEL_SPECS: readonly ModelSpec[] = [
  { name: 'Nehalem', features: ['pni', 'ssse3', 'cx16', 'sse4.1', 'sse4.2', 'popcnt', 'lahf-lm'] },
  { name: 'Westmere', extends: 'Nehalem', features: ['aes', 'pclmulqdq'] },
  { name: 'SandyBridge', extends: 'Westmere', features: ['avx', 'xsave', 'x2apic', 'rdtscp'] },
  { name: 'IvyBridge', extends: 'SandyBridge', features: ['f16c', 'rdrand', 'fsgsbase', 'smep', 'erms'] },
  {
    name: 'Haswell-noTSX',
    extends: 'IvyBridge',
    features: ['avx2', 'bmi1', 'bmi2', 'fma', 'movbe', 'invpcid', 'abm'],
  },
  { name: 'Broadwell-noTSX', extends: 'Haswell-noTSX', features: ['rdseed', 'adx', 'smap', '3dnowprefetch'] },
  { name: 'Skylake-Client-noTSX-IBRS', extends: 'Broadwell-noTSX', features: ['xsaveopt', 'xsavec', 'xgetbv1'] },
  {
    name: 'Skylake-Server-noTSX-IBRS',
    extends: 'Skylake-Client-noTSX-IBRS',
    features: ['avx512f', 'avx512dq', 'avx512cd', 'avx512bw', 'avx512vl', 'clwb', 'clflushopt', 'pdpe1gb'],
  },
  { name: 'Cascadelake-Server-noTSX', extends: 'Skylake-Server-noTSX-IBRS', features: ['avx512-vnni'] },
  { name: 'Cooperlake', extends: 'Cascadelake-Server-noTSX', features: ['avx512-bf16'] },
  {
    name: 'Icelake-Server-noTSX',
    extends: 'Cascadelake-Server-noTSX',
    features: [
      'avx512vbmi',
      'avx512vbmi2',
      'gfni',
      'vaes',
      'vpclmulqdq',
      'avx512bitalg',
      'avx512-vpopcntdq',
      'sha-ni',
      'umip',
      'rdpid',
    ],
  },
  {
    name: 'SapphireRapids',
    extends: 'Icelake-Server-noTSX',
    features: [
      'avx512-bf16',
      'avx512-fp16',
      'avx-vnni',
      'serialize',
      'tsxldtrk',
      'movdiri',
      'movdir64b',
      'fsrm',
      'amx-bf16',
      'amx-tile',
      'amx-int8',
    ],
  },
  { name: 'Haswell', extends: 'Haswell-noTSX', features: ['hle', 'rtm'] },
  { name: 'Broadwell', extends: 'Broadwell-noTSX', features: ['hle', 'rtm'] },
  { name: 'Skylake-Client', extends: 'Skylake-Client-noTSX-IBRS', features: ['hle', 'rtm'] },
  { name: 'Skylake-Server', extends: 'Skylake-Server-noTSX-IBRS', features: ['hle', 'rtm'] },
  { name: 'Cascadelake-Server', extends: 'Cascadelake-Server-noTSX', features: ['hle', 'rtm'] },
  { name: 'Icelake-Server', extends: 'Icelake-Server-noTSX', features: ['hle', 'rtm'] },
  {
    name: 'EPYC',
    features: [
      'pni', 'ssse3', 'cx16', 'sse4.1', 'sse4.2', 'popcnt', 'lahf-lm', 'aes', 'pclmulqdq', 'avx', 'xsave',
      'x2apic', 'rdtscp', 'f16c', 'rdrand', 'fsgsbase', 'smep', 'avx2', 'bmi1', 'bmi2', 'fma', 'movbe', 'abm',
      'rdseed', 'adx', 'smap', '3dnowprefetch', 'sse4a', 'misalignsse', 'cr8legacy', 'sha-ni', 'clflushopt',
      'xsaveopt', 'xsavec', 'xgetbv1', 'clzero', 'xsaveerptr', 'pdpe1gb', 'mmxext', 'fxsr-opt',
    ],
  },
  { name: 'EPYC-Rome', extends: 'EPYC', features: ['clwb', 'umip', 'rdpid', 'wbnoinvd'] },
  { name: 'EPYC-Milan', extends: 'EPYC-Rome', features: ['pku', 'fsrm', 'erms', 'invpcid', 'vaes', 'vpclmulqdq'] },
];

function resolveModels(): Map<string, ReadonlySet<string>> {
  const resolved = new Map<string, ReadonlySet<string>>();
  for (const spec of MODEL_SPECS) {
    const inherited = spec.extends === undefined ? [] : [...(resolved.get(spec.extends) ?? [])];
    resolved.set(spec.name, new Set([...inherited, ...spec.features]));
  }
  return resolved;
}

/** Named model → every feature it needs (QEMU names), oldest model first. */
export const CPU_MODELS: ReadonlyMap<string, ReadonlySet<string>> = resolveModels();

const INTEL_LINE = ['Nehalem', 'Westmere', 'SandyBridge', 'IvyBridge', 'Haswell-noTSX', 'Broadwell-noTSX',
  'Skylake-Client-noTSX-IBRS', 'Skylake-Server-noTSX-IBRS', 'Cascadelake-Server-noTSX', 'Cooperlake',
  'Icelake-Server-noTSX', 'SapphireRapids'];
const AMD_LINE = ['Nehalem', 'Westmere', 'SandyBridge', 'IvyBridge', 'Haswell-noTSX', 'EPYC', 'EPYC-Rome', 'EPYC-Milan'];

export class CpuinfoParseError extends Error {
  override readonly name = 'CpuinfoParseError';
}

/** QEMU's generic models every x86 host can give a guest (64-bit ones need long mode). */
export const BASELINE_CPU_MODELS: readonly string[] = ['qemu64', 'kvm64', 'qemu32', 'kvm32'];

/** The named models whose every feature is in `features`, oldest first. */
export function supportedModels(features: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [model, needs] of CPU_MODELS) {
    if ([...needs].every((f) => features.has(f))) out.push(model);
  }
  return out;
}

/** Parses the first processor block of /proc/cpuinfo (x86). */
export function describeCpu(cpuinfo: string): CpuDescription {
  const fields = new Map<string, string>();
  for (const line of cpuinfo.split('\n')) {
    if (line.trim() === '') {
      if (fields.size > 0) break;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const flags = fields.get('flags');
  if (flags === undefined) throw new CpuinfoParseError('cpuinfo has no "flags" line (not an x86 host?)');
  const features = [...new Set(flags.split(/\s+/).filter((f) => f !== '').map(qemuFeatureName))].sort();
  const featureSet = new Set(features);
  const vendorId = fields.get('vendor_id') ?? 'unknown';
  const vendor = vendorId === 'GenuineIntel' ? 'Intel' : vendorId === 'AuthenticAMD' ? 'AMD' : vendorId;
  const baseline = BASELINE_CPU_MODELS.filter((m) => !m.endsWith('64') || featureSet.has('lm'));
  const models = [...baseline, ...supportedModels(featureSet)];
  const line = vendor === 'AMD' ? AMD_LINE : INTEL_LINE;
  const hostModel = [...line].reverse().find((m) => models.includes(m));
  return { vendor, modelName: fields.get('model name') ?? '', features, models, hostModel };
}

// The KeyVirt test guest as tests and benchmarks see it: where its bootable disk is
// (built on first use by hack/guest/build.sh, cached by content hash; the firmware
// boots it like any VM's disk, ADR 0087), and what it does that a test can check —
// the counter it prints on the serial console and writes to its first disk, the
// NoCloud seed it reads, the memory-dirtying workload it runs on request.
// See docs/adr/0030-test-guest.md.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';

const run = promisify(execFile);

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const buildScript = path.join(repoRoot, 'hack', 'guest', 'build.sh');

/** The virtio-serial port name the guest runs qemu-ga on. */
export const GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0';
/** Disk bytes the counter ring occupies at most (records are one 512-byte sector each). */
export const COUNTER_RING_BYTES = 8192 * 512;
/** The guest's counter interval (ms) when nothing else is configured. */
export const COUNTER_INTERVAL_MS = 200;

export class GuestBuildError extends Error {
  override readonly name = 'GuestBuildError';
}

export class GuestImageError extends Error {
  override readonly name = 'GuestImageError';
}

const manifestSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{16}$/),
  disk: z.string().min(1),
  diskBytes: z.number().int().positive(),
  kernelRelease: z.string().min(1),
  kernelPackage: z.string().min(1),
  kernelPackageVersion: z.string().min(1),
  busyboxVersion: z.string(),
  qemuGaVersion: z.string(),
  modules: z.array(z.string()),
  builtAt: z.string(),
});

export interface TestGuest {
  /** The build directory, hack/.cache/guest/<hash>. */
  readonly dir: string;
  /** Content hash of the build inputs (scripts, sources, package versions). */
  readonly hash: string;
  /** The bootable disk (qcow2): the kernel, initramfs and command line behind syslinux, booted by the firmware. */
  readonly disk: string;
  /** The disk's virtual size. */
  readonly diskBytes: number;
  readonly kernelRelease: string;
  readonly kernelPackageVersion: string;
  /** qemu-ga is inside the initramfs and starts when the agent channel exists. */
  readonly hasGuestAgent: boolean;
  readonly guestAgentVersion: string;
  readonly agentChannel: typeof GUEST_AGENT_CHANNEL;
}

let cached: Promise<TestGuest> | undefined;

async function buildGuest(): Promise<TestGuest> {
  let stdout: string;
  try {
    ({ stdout } = await run('bash', [buildScript], { maxBuffer: 16 * 1024 * 1024, timeout: 15 * 60_000 }));
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new GuestBuildError(`hack/guest/build.sh failed: ${typeof stderr === 'string' ? stderr.trim() : String(err)}`, {
      cause: err,
    });
  }
  const dir = stdout.trim().split('\n').at(-1) ?? '';
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
  } catch (err) {
    throw new GuestBuildError(`no readable manifest.json in ${dir}`, { cause: err });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw new GuestBuildError(`bad manifest in ${dir}: ${parsed.error.message}`);
  const m = parsed.data;
  return {
    dir,
    hash: m.hash,
    disk: path.join(dir, m.disk),
    diskBytes: m.diskBytes,
    kernelRelease: m.kernelRelease,
    kernelPackageVersion: m.kernelPackageVersion,
    hasGuestAgent: m.qemuGaVersion !== '',
    guestAgentVersion: m.qemuGaVersion,
    agentChannel: GUEST_AGENT_CHANNEL,
  };
}

/**
 * The test guest's artefacts; builds them first when the cache has no build for the
 * current inputs (about a minute), otherwise returns in well under a second.
 * The answer is shared by every caller in the process.
 */
export function testGuest(): Promise<TestGuest> {
  cached ??= buildGuest().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

// ---------------------------------------------------------------------------
// Counter records: "KV boot=<id> n=<counter> t=<guest uptime ms>"

export interface CounterRecord {
  /** Random per boot (from the kernel's boot_id): a new value means the guest rebooted. */
  readonly bootId: string;
  /** Starts at 1 each boot, +1 per record. */
  readonly n: number;
  /** Guest uptime in ms when the record was made. */
  readonly uptimeMs: number;
}

const recordPattern = /KV boot=([0-9a-f]{8,32}) n=(\d+) t=(\d+)/;

/** The counter record in one serial console line, if it holds one. */
export function parseCounterLine(line: string): CounterRecord | undefined {
  const m = recordPattern.exec(line);
  if (m === null) return undefined;
  return { bootId: m[1], n: Number(m[2]), uptimeMs: Number(m[3]) };
}

/** Every counter record in a serial console transcript, in the order printed. */
export function parseCounterLines(text: string): CounterRecord[] {
  const out: CounterRecord[] = [];
  for (const line of text.split(/\r?\n/)) {
    const record = parseCounterLine(line);
    if (record !== undefined) out.push(record);
  }
  return out;
}

export interface CounterContinuity {
  /** Boot ids in the order they first appear (more than one: the guest rebooted). */
  readonly bootIds: readonly string[];
  /** Places where n did not follow its predecessor by exactly 1 within one boot. */
  readonly breaks: readonly { readonly after: CounterRecord; readonly next: CounterRecord }[];
  /** Largest guest-uptime step between consecutive records of one boot (ms). */
  readonly maxGapMs: number;
  readonly first: CounterRecord | undefined;
  readonly last: CounterRecord | undefined;
}

/**
 * What a sequence of counter records says about the guest's life: one boot id and no
 * breaks means it ran on without a reboot or a lost record (what a live migration
 * must preserve); maxGapMs is the longest stall the guest's own clock saw.
 */
export function counterContinuity(records: readonly CounterRecord[]): CounterContinuity {
  const bootIds: string[] = [];
  const breaks: { after: CounterRecord; next: CounterRecord }[] = [];
  let maxGapMs = 0;
  records.forEach((record, i) => {
    if (!bootIds.includes(record.bootId)) bootIds.push(record.bootId);
    const prev = records[i - 1];
    if (prev === undefined || prev.bootId !== record.bootId) return;
    if (record.n !== prev.n + 1) breaks.push({ after: prev, next: record });
    maxGapMs = Math.max(maxGapMs, record.uptimeMs - prev.uptimeMs);
  });
  return { bootIds, breaks, maxGapMs, first: records[0], last: records.at(-1) };
}

/** The `keyvirt-test-value: <v>` values the guest found in its NoCloud user-data. */
export function parseSeedTestValues(text: string): string[] {
  return [...text.matchAll(/keyvirt-guest: keyvirt-test-value: ([^\r\n]*)/g)].map((m) => m[1].trim());
}

/** The guest's report of the seed it read (`keyvirt-guest: seed instance-id=… hostname=…`). */
export function parseSeedReport(text: string): { instanceId: string; hostname: string } | undefined {
  const m = /keyvirt-guest: seed instance-id=(\S+) hostname=(\S+)/.exec(text);
  return m === null ? undefined : { instanceId: m[1], hostname: m[2] };
}

// ---------------------------------------------------------------------------
// Disks

export type DiskFormat = 'raw' | 'qcow2';

export interface DiskOptions {
  readonly format: DiskFormat;
  /** Virtual size in MiB (default 64). */
  readonly sizeMiB?: number;
  /** File name inside dir (default `disk.<format>`). */
  readonly name?: string;
}

/** Creates an empty disk image in dir (qemu-img create) and returns its path. */
export async function createBlankDisk(dir: string, options: DiskOptions): Promise<string> {
  const file = path.join(dir, options.name ?? `disk.${options.format}`);
  await run('qemu-img', ['create', '-q', '-f', options.format, file, `${options.sizeMiB ?? 64}M`]);
  return file;
}

/**
 * Writes a copy of the guest's bootable disk to `file` (raw or qcow2, standalone) and
 * returns its path: a VM's own boot disk, or a backing image on a storage domain.
 */
export async function copyBootDisk(guest: Pick<TestGuest, 'disk'>, file: string, format: DiskFormat): Promise<string> {
  await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', format, guest.disk, file]);
  return file;
}

function recordsFromSectors(bytes: Buffer): CounterRecord[] {
  const records: CounterRecord[] = [];
  for (let off = 0; off + 512 <= bytes.length; off += 512) {
    if (bytes[off] !== 0x4b) continue; // 'K'
    const end = bytes.indexOf(0x0a, off);
    if (end < 0 || end >= off + 512) continue;
    const record = parseCounterLine(bytes.toString('latin1', off, end));
    if (record !== undefined) records.push(record);
  }
  return records.sort((a, b) => (a.bootId === b.bootId ? a.n - b.n : a.bootId.localeCompare(b.bootId)));
}

/**
 * The counter records on a disk image the guest wrote, grouped by boot id and
 * ordered by counter within a boot. Works on a disk that a running QEMU holds open (shared read, `-U`).
 */
export async function readDiskRecords(image: string, format: DiskFormat = 'raw'): Promise<CounterRecord[]> {
  if (format === 'raw') {
    const handle = await open(image, 'r');
    try {
      const buf = Buffer.alloc(COUNTER_RING_BYTES);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      return recordsFromSectors(buf.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-disk-'));
  try {
    const out = path.join(dir, 'head.raw');
    await run('qemu-img', ['dd', '-U', '-f', format, '-O', 'raw', 'bs=512', `count=${COUNTER_RING_BYTES / 512}`, `if=${image}`, `of=${out}`]);
    return recordsFromSectors(await readFile(out));
  } catch (err) {
    throw new GuestImageError(`cannot read counter records from ${image}`, { cause: err });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The highest counter the guest wrote to its raw disk `image` during boot `bootId` (0 when none). */
export async function maxCounterOfBoot(image: string, bootId: string): Promise<number> {
  return Math.max(0, ...(await readDiskRecords(image)).filter((r) => r.bootId === bootId).map((r) => r.n));
}

// ---------------------------------------------------------------------------
// NoCloud seed

export interface SeedOptions {
  readonly instanceId: string;
  readonly hostname?: string;
  /** Complete user-data; default: a #cloud-config with the hostname and testValue. */
  readonly userData?: string;
  /** Printed back by the guest as `keyvirt-guest: keyvirt-test-value: <v>`. */
  readonly testValue?: string;
  readonly networkConfig?: string;
  /** File name inside dir (default `seed.iso`). */
  readonly name?: string;
}

/** Writes a NoCloud seed ISO (volume label `cidata`) into dir and returns its path. */
export async function createSeedIso(dir: string, options: SeedOptions): Promise<string> {
  const content = await mkdtemp(path.join(dir, 'seed-'));
  try {
    const metaLines = [`instance-id: ${options.instanceId}`];
    if (options.hostname !== undefined) metaLines.push(`local-hostname: ${options.hostname}`);
    await writeFile(path.join(content, 'meta-data'), `${metaLines.join('\n')}\n`);
    const userLines = ['#cloud-config'];
    if (options.hostname !== undefined) userLines.push(`hostname: ${options.hostname}`);
    if (options.testValue !== undefined) userLines.push(`keyvirt-test-value: ${options.testValue}`);
    await writeFile(path.join(content, 'user-data'), options.userData ?? `${userLines.join('\n')}\n`);
    const files = ['user-data', 'meta-data'];
    if (options.networkConfig !== undefined) {
      await writeFile(path.join(content, 'network-config'), options.networkConfig);
      files.push('network-config');
    }
    const iso = path.join(dir, options.name ?? 'seed.iso');
    await mkdir(dir, { recursive: true });
    await run('genisoimage', ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', ...files], { cwd: content });
    return iso;
  } finally {
    await rm(content, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Workloads started through the guest agent

export interface GuestExecRequest {
  readonly path: string;
  readonly arg: readonly string[];
}

/**
 * The guest-exec request that starts the dirtying workload: `rateMiBs` MiB of distinct
 * pages rewritten every second, over a working set of `workingSetMiB` (default: the
 * rate, clamped to 16–128 MiB), until the process is killed. While it runs the guest
 * keeps /run/dirty.stat as "<pid> <rate> <working set MiB> <MiB dirtied so far> <ms since
 * start>" (rewritten every second; see parseDirtyStat).
 */
export function dirtyMemoryCommand(rateMiBs: number, workingSetMiB?: number): GuestExecRequest {
  const arg = [String(Math.max(1, Math.round(rateMiBs)))];
  if (workingSetMiB !== undefined) arg.push(String(Math.round(workingSetMiB)));
  return { path: '/bin/dirty', arg };
}

export interface DirtyStat {
  readonly pid: number;
  readonly rateMiBs: number;
  readonly workingSetMiB: number;
  readonly dirtiedMiB: number;
  readonly elapsedMs: number;
}

/** Parses the content of the guest's /run/dirty.stat. */
export function parseDirtyStat(text: string): DirtyStat | undefined {
  const m = /^(\d+) (\d+) (\d+) (\d+) (\d+)\s*$/.exec(text);
  if (m === null) return undefined;
  return { pid: Number(m[1]), rateMiBs: Number(m[2]), workingSetMiB: Number(m[3]), dirtiedMiB: Number(m[4]), elapsedMs: Number(m[5]) };
}

/** The guest-exec request that stops a workload started by guest-exec (by its pid). */
export function killGuestProcessCommand(pid: number): GuestExecRequest {
  return { path: '/bin/kill', arg: [String(pid)] };
}

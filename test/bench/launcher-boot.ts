// Launcher boot overhead and memory: "start → guest agent connected" for the same test
// guest and the same QEMU command line, paired in each repetition (the order alternates)
// so that both share the machine's load:
//   bare    QEMU alone; the agent is tried as soon as QEMU reports that the guest opened
//           the agent's port (QMP VSERPORT_CHANGE), i.e. the earliest it can answer;
//   image   the launcher as its pod runs it (hack/launcher-build, LAUNCHER_NODE_FLAGS);
//   source  (with --with-source) `node launcher/src/main.ts` without a compile cache, as a
//           launcher pod ran it before the build (its root filesystem is read-only);
//   uncached  (with --uncached) the image's launcher without the code cache its build made
//           (NODE_DISABLE_COMPILE_CACHE): what the cache saves, at the same load (ADR 0113).
// The overhead is each repetition's difference (launcher − bare, run back to back), its
// median and range reported; beside it the launcher's own, steadier parts: start → QEMU
// spawned, and port opened → agent connected (the detection lag); their sum less the
// bare run's detection lag is the launcher's share (`launcher_share_ms`), which single
// TCG boots varying by seconds under load do not drown. The launcher's CPU time when it
// spawns QEMU (its log) is the share's steadier measure: wall time on a contended CPU is
// that CPU stretched by the load. The guest's boot (QEMU spawned → agent port opened) is
// reported for both, the rest of the end-to-end difference. Memory of the pod
// beside QEMU is the launcher process: resident, private (anonymous) and proportional
// (shared pages divided among the processes that map them), next to QEMU's resident set
// and to what the launcher pod's memory request states for the launcher. The launcher is
// all that runs in its pod beside QEMU, so its resident set is the pod's overhead. Last,
// --shared N launchers (default 3) run their guests side by side: what each adds on one
// node is its proportional set (the Node binary's pages are shared), reported beside RSS.
// `--baseline-entry <main.js>` runs another launcher build (its entry, as
// hack/launcher-build prints it; e.g. another revision's) in the same repetitions:
// baseline_* figures and vs_baseline_* (this build − the baseline, paired per repetition).
// Unless --no-floor, the Node.js floor of the same run: node alone and node with the
// builtins a running launcher had loaded and a listening server, no launcher code
// (node_bare_rss_mib, node_floor_rss_mib, launcher_over_floor_mib).
//   npm run bench -- launcher-boot [--reps N] [--shared N] [--with-source] [--uncached] [--baseline-entry FILE] [--no-floor]   (default 5 reps)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { GuestAgentClient } from '../../launcher/src/agent/client.ts';
import { chooseAccelerator } from '../../launcher/src/qemu/accelerator.ts';
import { buildQemuArgs } from '../../launcher/src/qemu/command-line.ts';
import type { Accelerator } from '../../launcher/src/qemu/command-line.ts';
import { QmpClient } from '../../launcher/src/qmp/client.ts';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../../hack/launcher-build/build-launcher.ts';
import { LAUNCHER_PROCESS_BYTES } from '../../operator/src/vm/launcher-resources.ts';
import { createSharedVm, DEFAULT_VM_UID, removeSharedVm, startLauncher, type LauncherProcess, type LogLine } from '../support/launcher-process.ts';
import { launcherMachinePlan } from '../support/launcher-machine-plan.ts';
import { builtinsRecording, nodeFloor, type NodeFloor } from '../support/node-floor.ts';
import { processMemory, type ProcessMemory } from '../support/process-memory.ts';
import { testGuest } from '../support/guest.ts';
import { median, untilAgentConnected } from '../support/launcher-runs.ts';

const AGENT_TIMEOUT_MS = 240_000;
const AGENT_CHANNEL = 'channel-qga0';
const silent = pino({ level: 'silent' });
const repoRoot = new URL('../..', import.meta.url).pathname;

/** "median [min–max]" of a series. */
function spread(values: readonly number[], digits = 0): string {
  const finite = values.filter((v) => Number.isFinite(v));
  const missing = values.length - finite.length;
  return `${median(finite).toFixed(digits)} [${Math.min(...finite).toFixed(digits)}–${Math.max(...finite).toFixed(digits)}]${missing > 0 ? ` (${missing} not logged)` : ''}`;
}

async function qmpWhenReady(path: string, deadline: number): Promise<QmpClient> {
  for (;;) {
    try {
      return await QmpClient.connect({ path, logger: silent });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(20);
    }
  }
}

/** Bare QEMU: spawn; on the guest opening the agent's port, synchronise with the agent until it answers guest-info. */
async function bareRun(accelerator: Accelerator): Promise<BareRun> {
  const vm = await createSharedVm({ diskFormat: 'raw', uid: DEFAULT_VM_UID });
  const plan = await launcherMachinePlan(vm, accelerator, vm.storageDir);
  const agentSocket = plan.sockets.guestAgent;
  if (agentSocket === undefined) throw new Error('the test VM has no guest-agent channel');
  const started = Date.now();
  const deadline = started + AGENT_TIMEOUT_MS;
  const qemu = spawn('qemu-system-x86_64', buildQemuArgs(plan), { stdio: 'ignore' });
  const exited = once(qemu, 'exit');
  let qmp: QmpClient | undefined;
  try {
    qmp = await qmpWhenReady(plan.sockets.qmp, deadline);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), AGENT_TIMEOUT_MS);
    let portOpenedAt: number | undefined;
    try {
      for await (const event of qmp.events(ac.signal)) {
        if (event.event === 'VSERPORT_CHANGE' && event.data?.id === AGENT_CHANNEL && event.data.open === true) {
          portOpenedAt = Date.now();
          break;
        }
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    if (portOpenedAt === undefined) throw new Error('bare QEMU: the guest never opened the agent port');
    for (;;) {
      if (Date.now() > deadline) throw new Error('bare QEMU: the agent never answered');
      if (qemu.exitCode !== null) throw new Error(`bare QEMU exited with ${qemu.exitCode}`);
      const client = new GuestAgentClient({ path: agentSocket, logger: silent, syncTimeoutMs: 2000 });
      try {
        await client.connect();
        await client.info();
        const at = Date.now();
        client.close();
        return { ms: at - started, lagMs: at - portOpenedAt, bootMs: portOpenedAt - started, qemuRss: (await processMemory(qemu.pid ?? -1)).rssMiB };
      } catch {
        client.close();
        await sleep(50);
      }
    }
  } finally {
    qmp?.close();
    if (qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    await removeSharedVm(vm);
  }
}

interface BareRun {
  ms: number;
  lagMs: number;
  /** QEMU spawned → the guest opened the agent's port. */
  bootMs: number;
  qemuRss: number;
}

interface LauncherRun {
  ms: number;
  toQemuMs: number;
  /** The launcher's CPU time when it spawned QEMU. */
  toQemuCpuMs: number;
  lagMs: number;
  /** QEMU spawned → the guest opened the agent's port. */
  bootMs: number;
  launcher: ProcessMemory;
  qemuRss: number;
  accel: string;
}

function logTime(logs: readonly LogLine[], match: (l: LogLine) => boolean): number {
  const time = logs.find(match)?.time;
  return typeof time === 'number' ? time : NaN;
}

/** A launcher (`command`), from its spawn until its event stream reports the agent connected. */
async function launcherRun(command: readonly string[] | undefined, env: NodeJS.ProcessEnv): Promise<LauncherRun> {
  // Debug level: the launcher logs QMP events, among them the agent port's VSERPORT_CHANGE.
  const launcher = await startLauncher({ env: { KEYVIRT_LOG_LEVEL: 'debug', ...env }, ...(command === undefined ? {} : { command }) });
  const started = launcher.startedAt;
  try {
    const { ms, qemuPid, accel } = await untilAgentConnected(launcher);
    const memory = await processMemory(launcher.process.pid ?? -1);
    // The status event can overtake the log line on the launcher's stdout pipe.
    for (let i = 0; i < 40 && !launcher.logs().some((l) => l.msg === 'guest agent connected'); i++) await sleep(50);
    const logs = launcher.logs();
    const portOpened = logTime(logs, (l) => {
      const event = l.event;
      const data = l.data as { id?: unknown; open?: unknown } | undefined;
      return l.msg === 'qmp event' && event === 'VSERPORT_CHANGE' && data?.id === AGENT_CHANNEL && data.open === true;
    });
    const spawned = logs.find((l) => l.msg === 'qemu spawned');
    const spawnedAt = typeof spawned?.time === 'number' ? spawned.time : NaN;
    return {
      ms,
      toQemuMs: spawnedAt - started,
      toQemuCpuMs: typeof spawned?.launcherCpuMs === 'number' ? spawned.launcherCpuMs : NaN,
      lagMs: logTime(logs, (l) => l.msg === 'guest agent connected') - portOpened,
      bootMs: portOpened - spawnedAt,
      launcher: memory,
      qemuRss: (await processMemory(qemuPid)).rssMiB,
      accel,
    };
  } finally {
    await launcher.dispose();
  }
}

type Variant = 'bare' | 'image' | 'source' | 'uncached' | 'baseline';
type LauncherVariant = Exclude<Variant, 'bare'>;

/** `n` launchers (`command`) whose guests boot side by side; the memory of each once every agent is connected. */
async function sharedRun(command: readonly string[], n: number): Promise<ProcessMemory[]> {
  const launchers: LauncherProcess[] = [];
  try {
    for (let i = 0; i < n; i++) launchers.push(await startLauncher({ name: `shared-${i}`, command }));
    await Promise.all(launchers.map((l) => untilAgentConnected(l)));
    await sleep(2000);
    return await Promise.all(launchers.map((l) => processMemory(l.process.pid ?? -1)));
  } finally {
    await Promise.all(launchers.map((l) => l.dispose()));
  }
}

/**
 * The Node.js floor under the launcher: a launcher run with a recorder preloaded until its
 * agent connects gives the builtins it has loaded; then node alone and node with those
 * builtins and a listening server, under the launcher's flags (test/support/node-floor.ts).
 */
async function floorRun(node: string, entry: string): Promise<NodeFloor> {
  const recording = await builtinsRecording();
  try {
    const launcher = await startLauncher({ name: 'floor', command: [node, ...LAUNCHER_NODE_FLAGS, ...recording.nodeArgs, entry], env: recording.env });
    let loaded: string[];
    try {
      await untilAgentConnected(launcher);
      loaded = await recording.read(launcher.process.pid ?? -1);
    } finally {
      await launcher.dispose();
    }
    return await nodeFloor(node, LAUNCHER_NODE_FLAGS, loaded);
  } finally {
    await recording.dispose();
  }
}

/** What each of N launchers costs a node that runs only them: its private pages plus its share of the file-backed ones. */
function sharedPerVm(memory: readonly ProcessMemory[]): number {
  return median(memory.map((m) => m.anonMiB)) + median(memory.map((m) => m.fileMiB)) / memory.length;
}

function flagValue(args: readonly string[], flag: string, fallback: number): number {
  const at = args.indexOf(flag);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!Number.isInteger(value) || value < 0) throw new Error(`${flag} must be a non-negative integer`);
  return value;
}

/** `--baseline-entry`'s launcher build, checked to exist. */
function baselineEntryOf(args: readonly string[]): string | undefined {
  const at = args.indexOf('--baseline-entry');
  if (at < 0) return undefined;
  const entry = args[at + 1];
  if (entry === undefined || !existsSync(entry)) throw new Error("--baseline-entry needs the path of a launcher build's main.js");
  return entry;
}

/** The command (undefined: the launcher from its sources) and environment a variant runs. */
function variantLaunch(variant: LauncherVariant, imageCommand: readonly string[], baselineEntry: string | undefined): [readonly string[] | undefined, Record<string, string>] {
  if (variant === 'source') return [undefined, { NODE_DISABLE_COMPILE_CACHE: '1' }];
  if (variant === 'baseline') return [[process.execPath, ...LAUNCHER_NODE_FLAGS, baselineEntry ?? ''], {}];
  return [imageCommand, variant === 'uncached' ? { NODE_DISABLE_COMPILE_CACHE: '1' } : {}];
}

export async function main(args: readonly string[]): Promise<void> {
  const reps = flagValue(args, '--reps', 5);
  if (reps < 1) throw new Error('--reps must be a positive integer');
  const sharedCount = flagValue(args, '--shared', 3);
  const baselineEntry = baselineEntryOf(args);
  const variants: readonly Variant[] = [
    'bare',
    'image',
    ...(args.includes('--uncached') ? (['uncached'] as const) : []),
    ...(args.includes('--with-source') ? (['source'] as const) : []),
    ...(baselineEntry === undefined ? [] : (['baseline'] as const)),
  ];
  const launcherVariants = variants.filter((v): v is LauncherVariant => v !== 'bare');
  await testGuest(); // build before the clock starts
  const build = buildLauncher(repoRoot, `${repoRoot}hack/.cache/launcher-build`);
  const imageCommand = [process.execPath, ...LAUNCHER_NODE_FLAGS, build.entry];
  const { accelerator } = await chooseAccelerator(true);
  const bare: BareRun[] = [];
  const runs: Record<LauncherVariant, LauncherRun[]> = { image: [], source: [], uncached: [], baseline: [] };
  let accel: string = accelerator;
  for (let i = 0; i < reps; i++) {
    const order = variants.map((_, k) => variants[(i + k) % variants.length] ?? 'bare');
    const line: string[] = [];
    for (const variant of order) {
      if (variant === 'bare') {
        const b = await bareRun(accelerator);
        bare.push(b);
        line.push(`bare_ms=${b.ms} bare_boot_ms=${b.bootMs} bare_lag_ms=${b.lagMs}`);
        continue;
      }
      const r = await launcherRun(...variantLaunch(variant, imageCommand, baselineEntry));
      runs[variant].push(r);
      accel = r.accel;
      line.push(
        `${variant}_ms=${r.ms} ${variant}_to_qemu_ms=${r.toQemuMs} ${variant}_to_qemu_cpu_ms=${r.toQemuCpuMs} ${variant}_boot_ms=${r.bootMs} ` +
          `${variant}_lag_ms=${r.lagMs} ${variant}_cpu_ms=${r.launcher.cpuMs} ` +
          `${variant}_rss_mib=${r.launcher.rssMiB.toFixed(1)} ${variant}_private_mib=${r.launcher.anonMiB.toFixed(1)} ${variant}_pss_mib=${r.launcher.pssMiB.toFixed(1)}`,
      );
    }
    process.stdout.write(`rep ${i + 1}/${reps} (${order.join(', ')}): ${line.join(' ')}\n`);
  }
  const overhead = (variant: LauncherVariant): number[] => runs[variant].map((r, i) => r.ms - (bare[i]?.ms ?? NaN));
  const image = runs.image;
  const share = (variant: LauncherVariant): number[] => runs[variant].map((r, i) => r.toQemuMs + r.lagMs - (bare[i]?.lagMs ?? NaN));
  const pick = (k: (r: LauncherRun) => number, variant: LauncherVariant = 'image'): number[] => runs[variant].map(k);
  process.stdout.write(`launcher-boot: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; build ${build.hash}; image flags ${LAUNCHER_NODE_FLAGS.join(' ')}\n`);
  for (const variant of launcherVariants) {
    process.stdout.write(
      `  ${variant}: overhead_ms ${spread(overhead(variant))}, launcher share ${spread(share(variant))} ms: start → QEMU spawned ${spread(pick((r) => r.toQemuMs, variant))} ms ` +
        `(CPU ${spread(pick((r) => r.toQemuCpuMs, variant))} ms), guest boot ${spread(pick((r) => r.bootMs, variant))} ms (bare ${spread(bare.map((b) => b.bootMs))}), ` +
        `port → agent ${spread(pick((r) => r.lagMs, variant))} ms (bare ${spread(bare.map((b) => b.lagMs))}), CPU ${spread(pick((r) => r.launcher.cpuMs, variant))} ms, ` +
        `RSS ${spread(pick((r) => r.launcher.rssMiB, variant), 1)} MiB (private ${spread(pick((r) => r.launcher.anonMiB, variant), 1)}, PSS ${spread(pick((r) => r.launcher.pssMiB, variant), 1)}), ` +
        `QEMU RSS ${spread(pick((r) => r.qemuRss, variant), 1)} MiB\n`,
    );
  }
  const floor = args.includes('--no-floor') ? undefined : await floorRun(process.execPath, build.entry);
  if (floor !== undefined) {
    process.stdout.write(
      `  Node.js floor (${LAUNCHER_NODE_FLAGS.join(' ')}): alone RSS ${floor.bare.rssMiB.toFixed(1)} MiB (private ${floor.bare.anonMiB.toFixed(1)}); ` +
        `with the ${floor.builtinCount} builtins the launcher had loaded and a listening server ${floor.builtins.rssMiB.toFixed(1)} MiB (private ${floor.builtins.anonMiB.toFixed(1)})\n`,
    );
  }
  const shared = sharedCount > 0 ? await sharedRun(imageCommand, sharedCount) : [];
  if (shared.length > 0) {
    process.stdout.write(
      `  ${shared.length} launchers side by side: RSS ${spread(shared.map((m) => m.rssMiB), 1)} MiB, private ${spread(shared.map((m) => m.anonMiB), 1)}, ` +
        `PSS ${spread(shared.map((m) => m.pssMiB), 1)} (shared pages divided among every process mapping them, other Node processes of this host included); ` +
        `private + file-backed / ${shared.length}: ${sharedPerVm(shared).toFixed(1)} MiB per VM\n`,
    );
  }
  const launcherRss = median(pick((r) => r.launcher.rssMiB));
  const rss = pick((r) => r.launcher.rssMiB);
  const qemuRss = median(pick((r) => r.qemuRss));
  const over = overhead('image');
  const shares = share('image').filter((v) => Number.isFinite(v));
  const uncached = variants.includes('uncached')
    ? `uncached_share_ms=${Math.round(median(share('uncached')))} uncached_to_qemu_cpu_ms=${Math.round(median(pick((r) => r.toQemuCpuMs, 'uncached')))} ` +
      `uncached_rss_mib=${median(pick((r) => r.launcher.rssMiB, 'uncached')).toFixed(1)} `
    : '';
  const source = variants.includes('source')
    ? `source_overhead_ms=${Math.round(median(overhead('source')))} source_share_ms=${Math.round(median(share('source')))} source_rss_mib=${median(pick((r) => r.launcher.rssMiB, 'source')).toFixed(1)} `
    : '';
  const paired = (k: (r: LauncherRun) => number): number => median(runs.baseline.map((b, i) => (image[i] === undefined ? NaN : k(image[i]) - k(b))));
  const baseline = variants.includes('baseline')
    ? `baseline_share_ms=${Math.round(median(share('baseline')))} baseline_to_qemu_cpu_ms=${Math.round(median(pick((r) => r.toQemuCpuMs, 'baseline')))} ` +
      `baseline_rss_mib=${median(pick((r) => r.launcher.rssMiB, 'baseline')).toFixed(1)} baseline_private_mib=${median(pick((r) => r.launcher.anonMiB, 'baseline')).toFixed(1)} ` +
      `vs_baseline_to_qemu_cpu_ms=${Math.round(paired((r) => r.toQemuCpuMs))} vs_baseline_rss_mib=${paired((r) => r.launcher.rssMiB).toFixed(1)} ` +
      `vs_baseline_private_mib=${paired((r) => r.launcher.anonMiB).toFixed(1)} `
    : '';
  const floorFigures =
    floor === undefined
      ? ''
      : `node_bare_rss_mib=${floor.bare.rssMiB.toFixed(1)} node_floor_rss_mib=${floor.builtins.rssMiB.toFixed(1)} node_floor_private_mib=${floor.builtins.anonMiB.toFixed(1)} ` +
        `node_floor_builtins=${floor.builtinCount} launcher_over_floor_mib=${(launcherRss - floor.builtins.rssMiB).toFixed(1)} `;
  const sharedFigures =
    shared.length > 0
      ? `shared_launchers=${shared.length} shared_rss_mib=${median(shared.map((m) => m.rssMiB)).toFixed(1)} shared_pss_mib=${median(shared.map((m) => m.pssMiB)).toFixed(1)} ` +
        `shared_per_vm_mib=${sharedPerVm(shared).toFixed(1)} `
      : '';
  process.stdout.write(
    `BENCH launcher-boot bare_ms=${Math.round(median(bare.map((b) => b.ms)))} launcher_ms=${Math.round(median(image.map((r) => r.ms)))} ` +
      `overhead_ms=${Math.round(median(over))} overhead_min_ms=${Math.min(...over)} overhead_max_ms=${Math.max(...over)} ` +
      `launcher_share_ms=${Math.round(median(shares))} launcher_share_min_ms=${Math.min(...shares)} launcher_share_max_ms=${Math.max(...shares)} ` +
      `to_qemu_ms=${Math.round(median(pick((r) => r.toQemuMs)))} to_qemu_cpu_ms=${Math.round(median(pick((r) => r.toQemuCpuMs)))} ` +
      `boot_ms=${Math.round(median(pick((r) => r.bootMs)))} bare_boot_ms=${Math.round(median(bare.map((b) => b.bootMs)))} agent_lag_ms=${Math.round(median(pick((r) => r.lagMs)))} bare_agent_lag_ms=${Math.round(median(bare.map((b) => b.lagMs)))} ` +
      `launcher_rss_mib=${launcherRss.toFixed(1)} launcher_rss_min_mib=${Math.min(...rss).toFixed(1)} launcher_rss_max_mib=${Math.max(...rss).toFixed(1)} ` +
      `launcher_private_mib=${median(pick((r) => r.launcher.anonMiB)).toFixed(1)} launcher_pss_mib=${median(pick((r) => r.launcher.pssMiB)).toFixed(1)} ` +
      `${floorFigures}${sharedFigures}pod_overhead_mib=${launcherRss.toFixed(1)} qemu_rss_mib=${qemuRss.toFixed(1)} pod_rss_mib=${(launcherRss + qemuRss).toFixed(1)} ` +
      `request_launcher_mib=${LAUNCHER_PROCESS_BYTES / 2 ** 20} ${uncached}${source}${baseline}reps=${reps} accel=${accel}\n`,
  );
}

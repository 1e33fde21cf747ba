// What a launcher pod holds beside QEMU in its two forms, paired in each repetition (the
// order alternates) for the same test guest and the same launcher build:
//   in-pod  the launcher as its pod runs it today, QEMU's parent: the pod beside QEMU is
//           the launcher process (hack/launcher-build, LAUNCHER_NODE_FLAGS);
//   held    QEMU held by the pod's PID 1, launcher/pod/vm-pod.sh in a PID namespace of its
//           own, with the same launcher outside the pod (`qemu.host: pod`, ADR 0131): the
//           pod beside QEMU is the script's three bash processes, and the launcher's
//           memory moves to whatever runs it (a node agent, ADR 0130).
// For each: start → guest agent connected, the pod's resident, private (anonymous) and
// proportional memory beside QEMU, QEMU's resident set, and in the held form the
// launcher's resident set outside the pod.
//   npm run bench -- held-pod [--reps N]   (default 3)
import { loadavg } from 'node:os';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../../hack/launcher-build/build-launcher.ts';
import { commandOf, processTree } from '../support/hosting-pod.ts';
import { startLauncher } from '../support/launcher-process.ts';
import { median, untilAgentConnected } from '../support/launcher-runs.ts';
import { processMemory } from '../support/process-memory.ts';

const repoRoot = new URL('../..', import.meta.url).pathname;

interface Memory {
  rss: number;
  anon: number;
  pss: number;
}

interface Run {
  ms: number;
  pod: Memory;
  qemuRss: number;
  /** The launcher outside the pod (held form only). */
  launcherRss: number;
  accel: string;
}

/** The first QEMU among `pids`. */
async function qemuAmong(pids: readonly number[]): Promise<number> {
  for (const pid of pids) if ((await commandOf(pid)).startsWith('qemu-system')) return pid;
  throw new Error('no QEMU found');
}

async function sum(pids: readonly number[]): Promise<Memory> {
  const total = { rss: 0, anon: 0, pss: 0 };
  for (const pid of pids) {
    const m = await processMemory(pid);
    total.rss += m.rssMiB;
    total.anon += m.anonMiB;
    total.pss += m.pssMiB;
  }
  return total;
}

async function run(form: 'in-pod' | 'held', command: readonly string[]): Promise<Run> {
  const launcher = await startLauncher({ name: form, command, ...(form === 'held' ? { hostingPod: 'namespace' as const } : {}) });
  try {
    const { ms, accel } = await untilAgentConnected(launcher);
    const launcherPid = launcher.process.pid ?? -1;
    // In its own pod the launcher is QEMU's parent and all the pod holds beside it; held,
    // the pod is the script's tree and the launcher is outside it.
    const init = form === 'held' ? await launcher.pod?.initPid() : undefined;
    const tree = init === undefined ? await processTree(launcherPid) : [init, ...(await processTree(init))];
    const qemu = await qemuAmong(tree);
    const pod = await sum(init === undefined ? [launcherPid] : tree.filter((p) => p !== qemu));
    const launcherRss = init === undefined ? NaN : (await processMemory(launcherPid)).rssMiB;
    return { ms, pod, qemuRss: (await processMemory(qemu)).rssMiB, launcherRss, accel };
  } finally {
    await launcher.dispose();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const at = args.indexOf('--reps');
  const reps = at >= 0 ? Number(args[at + 1]) : 3;
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
  const build = buildLauncher(repoRoot, `${repoRoot}hack/.cache/launcher-build`);
  const command = [process.execPath, ...LAUNCHER_NODE_FLAGS, build.entry];
  const loadBefore = loadavg()[0] ?? NaN;
  const inPod: Run[] = [];
  const held: Run[] = [];
  for (let i = 0; i < reps; i++) {
    const order = i % 2 === 0 ? (['in-pod', 'held'] as const) : (['held', 'in-pod'] as const);
    for (const form of order) {
      const r = await run(form, command);
      (form === 'held' ? held : inPod).push(r);
      process.stderr.write(
        `held-pod rep ${String(i + 1)}/${String(reps)} ${form}: agent connected ${String(r.ms)} ms; pod beside QEMU rss ${r.pod.rss.toFixed(1)} MiB ` +
          `(private ${r.pod.anon.toFixed(1)}, pss ${r.pod.pss.toFixed(1)}); QEMU ${r.qemuRss.toFixed(1)} MiB\n`,
      );
    }
  }
  const accel = [...new Set([...inPod, ...held].map((r) => r.accel))].join(',');
  const f = (runs: readonly Run[], pick: (r: Run) => number): string => median(runs.map(pick)).toFixed(1);
  const spread = (runs: readonly Run[]): string => `${String(Math.min(...runs.map((r) => r.ms)))}-${String(Math.max(...runs.map((r) => r.ms)))}`;
  process.stdout.write(
    `BENCH held-pod reps=${String(reps)} pod_overhead_mib=${f(inPod, (r) => r.pod.rss)} pod_private_mib=${f(inPod, (r) => r.pod.anon)} pod_pss_mib=${f(inPod, (r) => r.pod.pss)} ` +
      `held_pod_overhead_mib=${f(held, (r) => r.pod.rss)} held_pod_private_mib=${f(held, (r) => r.pod.anon)} held_pod_pss_mib=${f(held, (r) => r.pod.pss)} ` +
      `held_launcher_rss_mib=${f(held, (r) => r.launcherRss)} qemu_rss_mib=${f(inPod, (r) => r.qemuRss)} held_qemu_rss_mib=${f(held, (r) => r.qemuRss)} ` +
      `to_agent_ms=${String(Math.round(median(inPod.map((r) => r.ms))))} to_agent_range_ms=${spread(inPod)} held_to_agent_ms=${String(Math.round(median(held.map((r) => r.ms))))} held_to_agent_range_ms=${spread(held)} ` +
      `load=${loadBefore.toFixed(1)}-${(loadavg()[0] ?? NaN).toFixed(1)} accel=${accel}\n`,
  );
}

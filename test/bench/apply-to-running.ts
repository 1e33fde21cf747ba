// What the operator adds to a VM start: "kubectl apply → AgentConnected condition True"
// on the local cluster (operator under its shipped RBAC, launcher pod on a simulated
// node running the launcher image) next to "launcher start → guest agent connected" for
// the same guest run by a bare launcher process started the way the image starts it,
// interleaved in the same run. Watches (not polls) time each step of the apply: the
// operator creating the launcher pod, the scheduler binding it, the node simulator
// running it, its launcher spawning QEMU and seeing the agent (the launcher's log as the
// simulator keeps it), and the VM's AgentConnected condition; per step the median and range.
// Both boot the test guest from its disk through the firmware, as every VM does (`boot=disk`).
// At AgentConnected, the pod's cgroups (the node simulator's, as a kubelet's) give what
// the pod is charged for memory, and QEMU's CPU time over its wall time, in the pod and
// bare: the CPU share the guest's boot got. The simulator's pods share one CPU weight
// (its `keyvirt` cgroup) against every other process of the host, so the bare launcher
// also runs a second time from a cgroup placed as a pod's (`bare_cg`): the difference
// between the two bare runs is the simulator's CPU weighting, not KeyVirt.
// Each repetition also applies the same VM onto a real kubelet + containerd node
// (apply-to-running-real.ts): `real_node_apply_ms`, and what the launcher container's
// memory cgroup there is charged beside QEMU's anonymous memory (`real_beside_qemu_mib`,
// the node agent on that node running the same Node.js file: ADR 0116), unless
// --no-real-nodes. `control_path_ms` pairs what KeyVirt adds around the guest's boot:
// apply → QEMU spawned over the bare launcher's start → QEMU spawned, plus the status path.
//   npm run bench -- apply-to-running [--reps N] [--no-real-nodes]   (default 3)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../../hack/launcher-build/build-launcher.ts';
import { startLauncher, type LogLine } from '../support/launcher-process.ts';
import { processMemory } from '../support/process-memory.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { operatorKubeconfig, startOperator } from '../operator/operator-process.ts';
import { apply, scratch, testVm, TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';
import { startRealNodeBench, type RealNodeBench, type RealNodeRun } from './apply-to-running-real.ts';

const TIMEOUT_MS = 300_000;
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function spread(values: readonly number[]): string {
  return `${Math.round(median(values))} [${Math.min(...values)}–${Math.max(...values)}]`;
}

interface BareRun {
  ms: number;
  /** Launcher start → its log's "qemu spawned". */
  qemuSpawnedMs: number;
  accel: string;
  /** QEMU's CPU time over its lifetime so far, per wall second. */
  qemuCpuShare: number;
}

/** Removes an empty cgroup; the killed launcher and QEMU leave it a moment after their exit. */
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      await sleep(100);
    }
  }
  throw new Error(`cgroup ${dir} is still busy`);
}

/** The launcher container's cgroups of a pod that no node runs: `keyvirt/<node>/<pod>/launcher`, the shares of a 200m request. */
async function podLikeCgroup(id: string): Promise<{ dirs: string[]; cleanup: () => Promise<void> }> {
  const rel = ['keyvirt', `bench-${id}`, 'pod', 'launcher'];
  const dirs = ['cpu', 'memory'].map((c) => path.join('/sys/fs/cgroup', c, ...rel));
  for (const dir of dirs) await mkdir(dir, { recursive: true });
  await writeFile(path.join(dirs[0] ?? '', 'cpu.shares'), `${Math.round((200 * 1024) / 1000)}`);
  const cleanup = async (): Promise<void> => {
    for (const controller of ['cpu', 'memory']) {
      for (let depth = rel.length; depth >= 2; depth--) await removeCgroup(path.join('/sys/fs/cgroup', controller, ...rel.slice(0, depth)));
    }
  };
  return { dirs, cleanup };
}

/** The launcher `command`, first moved into the cgroups `dirs` (with its QEMU, its child). */
function inCgroups(dirs: readonly string[], command: readonly string[]): string[] {
  const join = dirs.map((d) => `echo $$ > '${d}/cgroup.procs'`).join('; ');
  return ['sh', '-c', `${join}; exec "$@"`, 'launcher', ...command];
}

/** The time (ms since the epoch) of the launcher's "qemu spawned" line. */
function spawnedAt(logs: readonly LogLine[]): number {
  const time = logs.find((l) => l.msg === 'qemu spawned')?.time;
  if (typeof time !== 'number') throw new Error('bare launcher: no "qemu spawned" line with a time in its log');
  return time;
}

async function bareLauncherMs(command: readonly string[]): Promise<BareRun> {
  // The same boot as through the operator: the guest's disk, through the firmware (ADR 0087).
  const launcher = await startLauncher({ command });
  try {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), TIMEOUT_MS);
    try {
      for await (const event of launcher.client.events(ac.signal)) {
        if (event.type === 'status' && event.status.guestAgent.connected) {
          const ms = Date.now() - launcher.startedAt;
          const qemuCpuShare = await cpuShare(event.status.qemu.pid ?? -1);
          return { ms, qemuSpawnedMs: spawnedAt(launcher.logs()) - launcher.startedAt, accel: event.status.accelerator, qemuCpuShare };
        }
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    throw new Error('bare launcher: the guest agent never connected');
  } finally {
    await launcher.dispose();
  }
}

/** A process's CPU time per second of its life so far (1 = one CPU all the time). */
async function cpuShare(pid: number): Promise<number> {
  const [memory, stat, uptime] = await Promise.all([processMemory(pid), readFile(`/proc/${pid}/stat`, 'utf8'), readFile('/proc/uptime', 'utf8')]);
  // starttime: field 22, in clock ticks (100 per second) since boot.
  const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const lifeMs = Number(uptime.split(' ')[0]) * 1000 - startTicks * 10;
  return memory.cpuMs / lifeMs;
}

/** What the pod's launcher container is charged and runs, read from the node simulator's cgroups. */
interface PodCgroupReading {
  /** memory.usage_in_bytes of the container's memory cgroup (launcher, QEMU, their page cache). */
  chargedMiB: number;
  /** Resident and private memory of the launcher process (the container's `node`). */
  launcherRssMiB: number;
  launcherPrivateMiB: number;
  qemuRssMiB: number;
  qemuCpuShare: number;
}

async function podCgroupReading(node: string, podUid: string): Promise<PodCgroupReading> {
  const dir = (controller: string): string => `/sys/fs/cgroup/${controller}/keyvirt/${node}/${podUid}/launcher`;
  const usage = Number(await readFile(`${dir('memory')}/memory.usage_in_bytes`, 'utf8'));
  const pids = (await readFile(`${dir('memory')}/cgroup.procs`, 'utf8')).split('\n').filter((l) => l !== '').map(Number);
  let launcher: { rss: number; anon: number } | undefined;
  let qemu: { rss: number; pid: number } | undefined;
  for (const pid of pids) {
    const exe = await readFile(`/proc/${pid}/cmdline`, 'utf8').then((c) => c.split('\0')[0] ?? '', () => '');
    const m = await processMemory(pid).catch(() => undefined);
    if (m === undefined) continue;
    if (exe.endsWith('/node')) launcher = { rss: m.rssMiB, anon: m.anonMiB };
    if (exe.includes('qemu-system')) qemu = { rss: m.rssMiB, pid };
  }
  if (launcher === undefined || qemu === undefined) throw new Error(`pod ${podUid}: no launcher or QEMU process in its cgroup (${pids.join(', ')})`);
  return {
    chargedMiB: usage / 2 ** 20,
    launcherRssMiB: launcher.rss,
    launcherPrivateMiB: launcher.anon,
    qemuRssMiB: qemu.rss,
    qemuCpuShare: await cpuShare(qemu.pid),
  };
}

/** When the pod's launcher spawned QEMU and saw the agent, from the log the node simulator keeps of it. */
async function launcherLogTimes(node: string, podUid: string): Promise<{ qemuSpawned: number; agentConnected: number }> {
  const file = path.join(repoRoot, '.keyvirt', 'nodes', node, 'pods', podUid, 'launcher.log');
  const time = (text: string, msg: string): number => {
    for (const line of text.split('\n')) {
      if (!line.includes(`"msg":"${msg}"`)) continue;
      const parsed = JSON.parse(line) as { time?: unknown };
      if (typeof parsed.time === 'number') return parsed.time;
    }
    return NaN;
  };
  // The status can overtake the log line on its way to the file.
  for (let attempt = 0; ; attempt++) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const agentConnected = time(text, 'guest agent connected');
    if (!Number.isNaN(agentConnected) || attempt >= 40) return { qemuSpawned: time(text, 'qemu spawned'), agentConnected };
    await sleep(50);
  }
}

/** `kubectl get -w` printing one line per change; `onLine` sees each line as it arrives. */
function watch(cluster: TestCluster, args: readonly string[], onLine: (line: string) => void): ChildProcess {
  const child = spawn(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfig, 'get', ...args, '--watch'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  return child;
}

interface ApplySteps {
  /** apply → the operator's launcher pod exists. */
  podCreatedMs: number;
  /** → the pod is bound to a node. */
  podBoundMs: number;
  /** → the pod is Running (the launcher process started). */
  podRunningMs: number;
  /** → the pod's launcher spawned QEMU (its log, written by the node simulator). */
  qemuSpawnedMs: number;
  /** → the pod's launcher logged the guest agent connected. */
  agentLoggedMs: number;
  /** apply → AgentConnected True on the VM. */
  ms: number;
  accel: string;
  pod: PodCgroupReading;
}

async function applyRun(cluster: TestCluster, s: Scratch, guest: TestGuest, name: string): Promise<ApplySteps> {
  const seen: Partial<Record<'created' | 'bound' | 'running' | 'agent', number>> = {};
  let accel = 'unknown';
  let placed: { node: string; uid: string } | undefined;
  let resolveAgent: () => void = () => undefined;
  const agent = new Promise<void>((resolve) => (resolveAgent = resolve));
  const mark = (step: keyof typeof seen): void => {
    seen[step] ??= Date.now();
  };
  // Watches start before the apply; an empty first answer is the list before anything exists.
  const pods = watch(cluster, ['pods', '-n', s.namespace, '-l', `keyvirt.io/vm=${name}`, '-o', 'jsonpath={.metadata.uid} node={.spec.nodeName} phase={.status.phase}{"\\n"}'], (line) => {
    if (line.trim() === '') return;
    mark('created');
    const [uid, node] = line.split(' ');
    if (node !== undefined && node !== 'node=') {
      mark('bound');
      placed = { uid: uid ?? '', node: node.slice('node='.length) };
    }
    if (/ phase=Running/.test(line)) mark('running');
  });
  const vms = watch(
    cluster,
    ['virtualmachines', '-n', s.namespace, '--field-selector', `metadata.name=${name}`, '-o', 'jsonpath={.status.accelerator} {.status.conditions[?(@.type=="AgentConnected")].status}{"\\n"}'],
    (line) => {
      const [acc, status] = line.trim().split(' ');
      if (status === 'True') {
        accel = acc ?? accel;
        mark('agent');
        resolveAgent();
      }
    },
  );
  try {
    // Both watches list before the apply (kubectl prints nothing for an empty list): give them a moment.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const started = Date.now();
    apply(cluster, testVm(s, guest, { name }));
    const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`VM ${name}: AgentConnected never became True`)), TIMEOUT_MS).unref());
    await Promise.race([agent, timer]);
    const at = (step: keyof typeof seen): number => (seen[step] ?? NaN) - started;
    if (placed === undefined) throw new Error(`VM ${name}: its launcher pod was never seen bound`);
    const pod = await podCgroupReading(placed.node, placed.uid);
    const log = await launcherLogTimes(placed.node, placed.uid);
    return {
      podCreatedMs: at('created'),
      podBoundMs: at('bound'),
      podRunningMs: at('running'),
      qemuSpawnedMs: log.qemuSpawned - started,
      agentLoggedMs: log.agentConnected - started,
      ms: at('agent'),
      accel,
      pod,
    };
  } finally {
    pods.kill();
    vms.kill();
    cluster.kubectl(['delete', 'vm', name, '-n', s.namespace, '--wait=true', '--timeout=180s']);
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Number(args[repsFlag + 1]) : 3;
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
  const guest = await testGuest();
  const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack/.cache/launcher-build'));
  const imageCommand = [process.execPath, ...LAUNCHER_NODE_FLAGS, build.entry];
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-apply');
  const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  const operator = startOperator({
    kubeconfig,
    logFile: path.join(s.dir, 'operator.log'),
    identity: `bench-${s.runId}`,
    leaseName: `keyvirt-e2e-${s.runId}`,
    vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
  });
  let realBench: RealNodeBench | undefined;
  try {
    await operator.healthPort;
    if (!args.includes('--no-real-nodes')) realBench = await startRealNodeBench(cluster, s, guest);
    const realRuns: RealNodeRun[] = [];
    const bare: number[] = [];
    const bareSpawned: number[] = [];
    const bareShares: number[] = [];
    const bareCg: number[] = [];
    const bareCgShares: number[] = [];
    const runs: ApplySteps[] = [];
    let accel = '';
    for (let i = 0; i < reps; i++) {
      // Alternate which goes first, so that neither always meets the other's aftermath.
      let b: BareRun;
      let a: ApplySteps;
      const cgroup = await podLikeCgroup(`${s.runId}-${i}`);
      let bc: BareRun;
      try {
        if (i % 2 === 0) {
          b = await bareLauncherMs(imageCommand);
          bc = await bareLauncherMs(inCgroups(cgroup.dirs, imageCommand));
          a = await applyRun(cluster, s, guest, `bench-${i}`);
        } else {
          a = await applyRun(cluster, s, guest, `bench-${i}`);
          bc = await bareLauncherMs(inCgroups(cgroup.dirs, imageCommand));
          b = await bareLauncherMs(imageCommand);
        }
      } finally {
        await cgroup.cleanup();
      }
      bareCg.push(bc.ms);
      bareCgShares.push(bc.qemuCpuShare);
      bare.push(b.ms);
      bareSpawned.push(b.qemuSpawnedMs);
      bareShares.push(b.qemuCpuShare);
      runs.push(a);
      accel = a.accel;
      if (realBench !== undefined) {
        const r = await realBench.run(`bench-real-${i}`);
        realRuns.push(r);
        process.stdout.write(
          `rep ${i + 1}/${reps}: real_node_apply_ms=${r.ms} node=${r.node} real_pod_charged_mib=${r.memory.chargedMiB.toFixed(1)} real_beside_qemu_mib=${r.memory.besideQemuMiB.toFixed(1)} ` +
            `real_launcher_rss_mib=${r.memory.launcherRssMiB.toFixed(1)} real_launcher_anon_mib=${r.memory.launcherAnonMiB.toFixed(1)} real_qemu_anon_mib=${r.memory.qemuAnonMiB.toFixed(1)} accel=${r.accel}\n`,
        );
      }
      process.stdout.write(
        `rep ${i + 1}/${reps}: bare_ms=${b.ms} bare_cg_ms=${bc.ms} apply_ms=${a.ms} overhead_ms=${a.ms - b.ms} overhead_cg_ms=${a.ms - bc.ms} control_path_ms=${a.qemuSpawnedMs - b.qemuSpawnedMs + a.ms - a.agentLoggedMs} bare_qemu_spawned_ms=${b.qemuSpawnedMs} pod_created_ms=${a.podCreatedMs} pod_bound_ms=${a.podBoundMs} pod_running_ms=${a.podRunningMs} qemu_spawned_ms=${a.qemuSpawnedMs} agent_logged_ms=${a.agentLoggedMs} ` +
          `qemu_cpu_share=${a.pod.qemuCpuShare.toFixed(2)} bare_qemu_cpu_share=${b.qemuCpuShare.toFixed(2)} bare_cg_qemu_cpu_share=${bc.qemuCpuShare.toFixed(2)} pod_charged_mib=${a.pod.chargedMiB.toFixed(1)} ` +
          `launcher_rss_mib=${a.pod.launcherRssMiB.toFixed(1)} launcher_private_mib=${a.pod.launcherPrivateMiB.toFixed(1)} qemu_rss_mib=${a.pod.qemuRssMiB.toFixed(1)} accel=${a.accel} (bare accel=${b.accel})\n`,
      );
    }
    const overhead = runs.map((r, i) => r.ms - (bare[i] ?? NaN));
    // What KeyVirt adds around the guest's boot, free of the boot's own spread under TCG:
    // apply → QEMU spawned over the bare launcher's start → QEMU spawned, plus the status
    // path from the launcher seeing the agent to the VM's condition.
    const controlPath = runs.map((r, i) => r.qemuSpawnedMs - (bareSpawned[i] ?? NaN) + (r.ms - r.agentLoggedMs));
    const podBoot = runs.map((r) => r.agentLoggedMs - r.qemuSpawnedMs);
    const bareBoot = bare.map((ms, i) => ms - (bareSpawned[i] ?? NaN));
    const overheadCg = runs.map((r, i) => r.ms - (bareCg[i] ?? NaN));
    process.stdout.write(
      `apply-to-running: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; build ${build.hash}; apply → pod created ${spread(runs.map((r) => r.podCreatedMs))} ms, ` +
        `→ bound ${spread(runs.map((r) => r.podBoundMs))} ms, → Running ${spread(runs.map((r) => r.podRunningMs))} ms, → QEMU spawned ${spread(runs.map((r) => r.qemuSpawnedMs))} ms, ` +
        `→ launcher sees the agent ${spread(runs.map((r) => r.agentLoggedMs))} ms, → AgentConnected on the VM ${spread(runs.map((r) => r.ms))} ms ` +
        `(status path ${spread(runs.map((r) => r.ms - r.agentLoggedMs))} ms); ` +
        `bare launcher ${spread(bare)} ms (QEMU spawned ${spread(bareSpawned)} ms), from a pod's cgroup ${spread(bareCg)} ms; overhead ${spread(overhead)} ms, over the cgroup bare ${spread(overheadCg)} ms; ` +
        `control path (before QEMU and after the agent, over bare) ${spread(controlPath)} ms; the guest's boot, QEMU spawned → agent: in the pod ${spread(podBoot)} ms, bare ${spread(bareBoot)} ms\n`,
    );
    process.stdout.write(
      `BENCH apply-to-running bare_ms=${Math.round(median(bare))} apply_ms=${Math.round(median(runs.map((r) => r.ms)))} overhead_ms=${Math.round(median(overhead))} ` +
        `overhead_min_ms=${Math.min(...overhead)} overhead_max_ms=${Math.max(...overhead)} bare_cg_ms=${Math.round(median(bareCg))} overhead_cg_ms=${Math.round(median(overheadCg))} ` +
        `overhead_cg_min_ms=${Math.min(...overheadCg)} overhead_cg_max_ms=${Math.max(...overheadCg)} ` +
        `control_path_ms=${Math.round(median(controlPath))} control_path_min_ms=${Math.min(...controlPath)} control_path_max_ms=${Math.max(...controlPath)} ` +
        `pod_boot_ms=${Math.round(median(podBoot))} bare_boot_ms=${Math.round(median(bareBoot))} pod_running_ms=${Math.round(median(runs.map((r) => r.podRunningMs)))} qemu_spawned_ms=${Math.round(median(runs.map((r) => r.qemuSpawnedMs)))} ` +
        `status_path_ms=${Math.round(median(runs.map((r) => r.ms - r.agentLoggedMs)))} ` +
        `qemu_cpu_share=${median(runs.map((r) => r.pod.qemuCpuShare)).toFixed(2)} bare_qemu_cpu_share=${median(bareShares).toFixed(2)} bare_cg_qemu_cpu_share=${median(bareCgShares).toFixed(2)} ` +
        `pod_charged_mib=${median(runs.map((r) => r.pod.chargedMiB)).toFixed(1)} launcher_rss_mib=${median(runs.map((r) => r.pod.launcherRssMiB)).toFixed(1)} ` +
        `launcher_private_mib=${median(runs.map((r) => r.pod.launcherPrivateMiB)).toFixed(1)} qemu_rss_mib=${median(runs.map((r) => r.pod.qemuRssMiB)).toFixed(1)} ` +
        (realRuns.length > 0 ? `real_node_apply_ms=${Math.round(median(realRuns.map((r) => r.ms)))} real_node_apply_min_ms=${Math.min(...realRuns.map((r) => r.ms))} real_node_apply_max_ms=${Math.max(...realRuns.map((r) => r.ms))} real_node_accel=${realRuns[0]?.accel ?? ''} ` +
            `real_pod_charged_mib=${median(realRuns.map((r) => r.memory.chargedMiB)).toFixed(1)} real_beside_qemu_mib=${median(realRuns.map((r) => r.memory.besideQemuMiB)).toFixed(1)} ` +
            `real_launcher_rss_mib=${median(realRuns.map((r) => r.memory.launcherRssMiB)).toFixed(1)} real_launcher_anon_mib=${median(realRuns.map((r) => r.memory.launcherAnonMiB)).toFixed(1)} `
          : '') +
        `boot=disk reps=${reps} accel=${accel}\n`,
    );
  } finally {
    await realBench?.dispose();
    operator.kill('SIGTERM');
    await Promise.race([operator.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    operator.kill('SIGKILL');
    await s.cleanup();
    cluster.release();
  }
}

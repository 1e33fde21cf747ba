// Operator scale: N VMs on kwok-simulated nodes (their launcher pods are created,
// scheduled and bound, never run), created in one burst (32 creations in flight), then:
//   all_pods_ms        burst start → every launcher pod created (pods_after_burst_ms: from the burst's end)
//   reconciles_per_s   VM reconciles over that time
//   operator_rss_mib   the operator's RSS once every pod is bound (peak_rss_mib: its high-water mark)
//   idle_cpu_pct       the operator's CPU over 30 s once nothing changes
//   burst_/outage_peak_rss_mib, _heap_used_mib, _heap_total_mib, _external_mib
//                      the highest samples of the operator's RSS, V8 heap (used, reserved) and
//                      memory outside it during the burst, and from the outage until the
//                      controllers stop reconciling after it (resettled_peak_rss_mib: the
//                      high-water mark then, resettled_rss_mib: the RSS)
//   relist_ms          the API server away for 15 s (as a restart looks to the operator: every
//                      connection cut, new ones refused): from it answering again until the
//                      operator's caches are whole again (resync: relist, resumed watch, or,
//                      for an operator before ADR 0117, a manager that stepped down and
//                      started over with fresh caches and a new health server)
//   api_requests_per_vm requests the operator counted (reads and writes, not watches), per VM
//   burst_cpu_pct      CPU during the burst (% of one core) of the operator, the API server, etcd,
//                      the scheduler, the controller manager, kwok and this benchmark's own process
//   apiserver_cpu_ms_per_vm  the API server's CPU from the burst's start until every pod is bound,
//                      per VM (floor_apiserver_cpu_ms_per_pod: the same for the floor's pods): what N
//                      VMs cost it whatever the cores: N × it / cores bounds all_bound_ms from below
//   floor_all_pods_ms  the same N launcher pods, rendered by the operator's own functions, POSTed
//                      by a plain client at the operator's concurrency (--workers) with no operator
//                      running, timed the same way (floor_all_bound_ms, floor_pods_per_s; the
//                      operator's all_pods_ms over it: all_pods_over_floor). Run once, before the
//                      operators; `--no-floor` skips it. Before the pods the floor creates the N VMs
//                      (no operator watches them) the way the burst does: floor_vms_ms, and
//                      floor_apiserver_cpu_ms_per_vm_create beside floor_apiserver_cpu_ms_per_pod:
//                      their sum × N / cores is what any operator's burst costs this API server
//   to_all_pods_cluster_cpu_ms_per_vm  the machine's CPU (/proc/stat) from the burst's start until the last
//                      launcher pod, less this benchmark's own, per VM (to_all_pods_cpu_ms_per_vm: each
//                      measured process's; to_all_pods_machine_busy_pct: how busy the cores were;
//                      to_all_pods_cores_for_60s: the cores that work needs to fit in 60 s). The floor
//                      reports the same from its first VM to its last pod (floor_cluster_cpu_ms_per_vm, …)
//   to_all_pods_unmeasured_cpu_ms_per_vm  the machine's CPU no measured process spent (the kernel's
//                      loopback work, any other process): more than a few ms is other work in the window
//   quiet_wait_s, busy_before_pct  each run (and the floor) first waits until the machine is under
//                      15 % of a core busy over 5 s (at most 5 min): a cluster that just came up, or an
//                      earlier run's deletions, must not share the run's cores
//   etcd_start_*       etcd's revision and database size as the run starts (what earlier runs left)
// The operator reaches the shared API server through a loopback proxy of the bench's own,
// so the outage touches nobody else. `--baseline <git rev>` first runs the same bench
// against the operator of that revision, in the same invocation; `--baseline-last` runs it
// after the working tree instead. The same operator run twice in one invocation differs by
// up to ~15 % in CPU per VM, either way (docs/adr/0126): compare a change in both orders.
// `--cpu-prof <dir>` runs each
// operator under `node --cpu-prof`, stops it with SIGTERM and leaves its profile in <dir>
// (operator-<label>.cpuprofile); `node test/support/cpu-profile-summary.ts <file>` reads it.
// `--api-qps Q` starts the operators with `--api-qps Q --api-burst 2Q` (their own default: 200,
// 400); rate_limit_wait_s is the time requests waited for that limit during the burst, summed.
// `--eviction-strategy Shutdown` gives every VM (the floor's too) evictionStrategy Shutdown, so no
// launcher disruption budget takes part (default LiveMigrate: the namespace's budget does).
//   npm run bench -- operator-scale [--vms N] [--nodes M] [--workers W] [--baseline REV [--baseline-last]] [--cpu-prof DIR] [--no-floor] [--api-qps Q] [--eviction-strategy S]
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { startKwokNodes, type KwokNodes } from '../support/kwok.ts';
import { BURST_IN_FLIGHT, createAll, deleteCollection, untilNamespaceGone, perVm, podTimes, untilBound, untilCreated, vmManifest, type EvictionStrategy } from '../support/scale-burst.ts';
import { cpuBudgetFields, untilMachineQuiet } from '../support/cpu-budget.ts';
import { etcdFields, etcdStateOrWhy } from '../support/etcd-state.ts';
import { ports } from '../../hack/cluster/layout.ts';
import { floorFields, runFloor, type Floor } from '../support/scale-floor.ts';
import { memoryFields, OperatorMemorySamples } from '../support/operator-memory-samples.ts';
import { metricSum, operatorRequests, rateLimitWaitBetween, requestsByResource } from '../support/operator-metrics-text.ts';
import { nodeFlagsOf, operatorEntryOf, startOperatorFrom, treeAt } from '../support/operator-under-bench.ts';
import { apiServerPid, cpuShares, cpuSince, processesOf, procStats, type CpuSubjects } from '../support/process-cpu.ts';
import { kubeconfigThrough, startApiOutageProxy, type ApiOutageProxy } from '../support/api-outage-proxy.ts';
import { operatorKubeconfig } from '../operator/operator-process.ts';
import { scratch, TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const IDLE_WINDOW_MS = 30_000;
/** How long the API server is away: a kube-apiserver restart here took 15–25 s, longer than the lease's renew deadline. */
const OUTAGE_MS = 15_000;

function flag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}

function stringFlag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function httpText(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** Drops the VMs' finalizers in parallel (the operator is gone by then). */
async function releaseVms(client: KubeClient, s: Scratch, count: number): Promise<void> {
  for (let start = 0; start < count; start += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - start) }, (_, j) =>
        client.patch(`/apis/keyvirt.io/v1alpha1/namespaces/${s.namespace}/virtualmachines/scale-${start + j}`, { metadata: { finalizers: null } }, 'merge').catch(() => undefined),
      ),
    );
  }
}

interface Setting {
  readonly cluster: TestCluster;
  readonly admin: KubeClient;
  readonly api: ApiOutageProxy;
  readonly kwokLabel: string;
  readonly vms: number;
  readonly workers: number;
  /** The VMs' evictionStrategy (`--eviction-strategy`): LiveMigrate puts the namespace's launcher disruption budget in the run. */
  readonly evictionStrategy: EvictionStrategy;
  /** The API server's process, when it runs on this machine: its CPU during the burst. */
  readonly apiServerPid: number | undefined;
  /** Kept after the run: the operators' logs. */
  readonly logDir: string;
  /** The processes whose CPU each burst reports beside the operator's (control plane, kwok, this process). */
  readonly others: CpuSubjects;
  /** Where a profiled operator leaves its CPU profile. */
  readonly cpuProfDir: string | undefined;
  /** The operator's client rate limit (`--api-qps`, burst twice that); its own default when absent. */
  readonly apiQps: number | undefined;
  /** The local cluster's etcd (its JSON gateway): its state before each run. */
  readonly etcdUrl: string;
}

/**
 * After a resync the controllers go over every VM again: waits until their reconciles stop
 * (a counter that restarted from zero with a new manager is not quiet), at most 5 min.
 */
async function untilReconcilesStop(reconciles: () => Promise<number>, vms: number): Promise<void> {
  let reconciled = await reconciles();
  const deadline = Date.now() + 5 * 60_000;
  while (Date.now() < deadline) {
    await sleep(5000);
    const now = await reconciles();
    if (Math.abs(now - reconciled) <= Math.max(5, vms / 1000)) return;
    reconciled = now;
  }
}

async function runOnce(st: Setting, label: string, tree: string, floor: Floor | undefined): Promise<string> {
  const { cluster, vms } = st;
  const say = (line: string): void => void process.stdout.write(`operator-scale[${label}]: ${line}\n`);
  const etcdAtStart = await etcdStateOrWhy(st.etcdUrl);
  if (typeof etcdAtStart === 'string') say(`etcd's state unread: ${etcdAtStart}`);
  const quiet = await untilMachineQuiet(say);
  const s = await scratch(cluster, 'kv-bench-scale');
  const stopWatch = new AbortController();
  const stopSampling = new AbortController();
  // The operator of a revision runs under that revision's RBAC (a later tree may grant less).
  const kubeconfig = await kubeconfigThrough(await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'), path.join(tree, 'operator/deploy/rbac.yaml')), st.api.url);
  const logFile = path.join(st.logDir, `operator-${label}.log`);
  const nodeFlags = await nodeFlagsOf(tree);
  const entry = await operatorEntryOf(tree);
  const profile = st.cpuProfDir === undefined ? undefined : { dir: st.cpuProfDir, name: `operator-${label.replace(/[^a-zA-Z0-9_-]/g, '_')}.cpuprofile` };
  const operator = startOperatorFrom({ entry, nodeFlags }, kubeconfig, s, logFile, { workers: st.workers, apiQps: st.apiQps, profile });
  try {
    const port = await operator.port;
    const latestPort = (): number => operator.ports.at(-1) ?? port;
    const metrics = (): Promise<string> => httpText(`http://127.0.0.1:${latestPort()}/metrics`);
    const operatorReady = async (): Promise<boolean> => {
      try {
        return (await fetch(`http://127.0.0.1:${latestPort()}/readyz`)).status === 200;
      } catch {
        return false;
      }
    };
    while (!(await operatorReady())) await sleep(250);
    const { created, bound, synced } = podTimes(st.admin, s.namespace, stopWatch.signal);
    await synced;
    const reconciles = async (): Promise<number> => metricSum(await metrics(), 'keyvirt_reconcile_total', { controller: 'virtualmachine' });
    const metricsBefore = await metrics();
    const before = { reconciles: await reconciles(), requests: operatorRequests(metricsBefore) ?? 0 };
    const burstCpu = await cpuShares(operator.pid, st.apiServerPid);
    const burstCpuAll = await cpuSince(new Map([['operator', [operator.pid]], ...st.others]));
    const memory = new OperatorMemorySamples(operator.pid, metrics);
    const sampling = memory.run(stopSampling.signal);
    memory.phase('burst');
    const started = Date.now();
    const atAllPods = untilCreated(created, vms, stopWatch.signal).then(() => burstCpuAll());
    atAllPods.catch(() => undefined); // awaited below; a run that fails first must not leave it unhandled
    await createAll(st.admin, s.namespace, Array.from({ length: vms }, (_, i) => vmManifest(s, st.kwokLabel, i, st.evictionStrategy)), BURST_IN_FLIGHT);
    const burstEnd = Date.now();
    say(`${vms} VMs applied in ${burstEnd - started} ms`);
    await untilBound(created, bound, vms, started, say);
    const lastCreated = Math.max(...created.values());
    const allPodsMs = lastCreated - started;
    const allBoundMs = Math.max(...bound.values()) - started;
    const reconcileCount = (await reconciles()) - before.reconciles;
    const atBound = await procStats(operator.pid);
    memory.phase('settle');
    const burst = await burstCpu();
    const burstAll = await burstCpuAll();
    const toAllPods = await atAllPods;
    const metricsAtBound = await metrics();
    const rateLimitWait = rateLimitWaitBetween(metricsBefore, metricsAtBound);
    // Settle: the burst is over once the operator writes nothing for 5 s (Lease renewals
    // aside; node heartbeats keep waking VMs whose reconciles then change nothing), or
    // once reconciles trickle for an operator that does not count its requests, or after 10 min.
    const activity = async (): Promise<number> => {
      const text = await metrics();
      return text.includes('resource="') ? metricSum(text, 'keyvirt_api_requests_total', { class: /^(write|status)$/, resource: /^(?!leases$)/ }) : metricSum(text, 'keyvirt_reconcile_total', { controller: 'virtualmachine' });
    };
    let settled = await activity();
    const settleDeadline = Date.now() + 10 * 60_000;
    while (Date.now() < settleDeadline) {
      await sleep(5000);
      const now = await activity();
      if (now - settled <= Math.max(5, vms / 1000)) break;
      settled = now;
    }
    const metricsSettled = await metrics();
    const counted = operatorRequests(metricsSettled);
    const byResource = requestsByResource(metricsBefore, metricsSettled, vms) || 'n/a';
    const requests = counted === undefined ? undefined : counted - before.requests;
    const idleFrom = { cpu: (await procStats(operator.pid)).cpuMs, requests: counted ?? 0 };
    await sleep(IDLE_WINDOW_MS);
    const idle = await procStats(operator.pid);
    const idleCpuPct = ((idle.cpuMs - idleFrom.cpu) / IDLE_WINDOW_MS) * 100;
    const settledRss = idle.rssMiB;
    const idleCounted = operatorRequests(await metrics());
    const idleRequests = idleCounted === undefined ? 'n/a' : String(idleCounted - idleFrom.requests);
    // API server restart: stopped, started again; the operator's caches must be whole again.
    const informerEvents = async (): Promise<{ lists: number; connects: number }> => {
      const text = await metrics();
      const kinds = /^(VirtualMachine|Pod)$/;
      return { lists: metricSum(text, 'keyvirt_informer_events_total', { kind: kinds, event: 'list' }), connects: metricSum(text, 'keyvirt_informer_events_total', { kind: kinds, event: 'connected' }) };
    };
    const beforeRestart = await informerEvents();
    const managerLives = operator.ports.length;
    const stopAt = Date.now();
    memory.phase('outage');
    await st.api.outage(OUTAGE_MS);
    const readyAt = Date.now();
    const resynced = async (): Promise<'relist' | 'resume' | 'restart' | undefined> => {
      // An outage longer than the renew deadline: the manager stepped down and started over with fresh caches.
      if (operator.ports.length > managerLives) return (await operatorReady()) ? 'restart' : undefined;
      const now = await informerEvents().catch(() => beforeRestart);
      if (now.lists >= beforeRestart.lists + 2) return 'relist';
      if (now.connects < beforeRestart.connects + 2 || now.lists !== beforeRestart.lists) return undefined;
      // Resumed watches: give a relist the chance to show (a 410 arrives on the resumed watch).
      await sleep(2000);
      const later = await informerEvents().catch(() => beforeRestart);
      return later.lists === beforeRestart.lists && operator.ports.length === managerLives ? 'resume' : undefined;
    };
    let resync: 'relist' | 'resume' | 'restart' | undefined;
    while (resync === undefined) {
      if (Date.now() - readyAt > 10 * 60_000) throw new Error('the operator did not resync within 10 min of the API server restart');
      resync = await resynced();
      if (resync === undefined) await sleep(100);
    }
    const relistMs = Date.now() - readyAt;
    const restartTotalMs = Date.now() - stopAt;
    const final = await procStats(operator.pid);
    await untilReconcilesStop(reconciles, vms);
    const resettled = await procStats(operator.pid);
    stopSampling.abort();
    await sampling;
    say(`${vms} VMs on kwok nodes; ${reconcileCount} reconciles; all bound after ${allBoundMs} ms; ${requests ?? 'uncounted'} API requests; idle: ${idleRequests} requests in ${IDLE_WINDOW_MS / 1000} s; after the restart: ${resync}, ${restartTotalMs} ms from the stop, RSS ${final.rssMiB.toFixed(1)} MiB`);
    const line =
      `BENCH operator-scale vms=${vms} all_pods_ms=${allPodsMs} reconciles_per_s=${(reconcileCount / (allPodsMs / 1000)).toFixed(1)} ` +
      `operator_rss_mib=${atBound.rssMiB.toFixed(1)} relist_ms=${relistMs} api_requests_per_vm=${requests === undefined ? 'n/a' : (requests / vms).toFixed(2)} ` +
      `pods_after_burst_ms=${lastCreated - burstEnd} all_bound_ms=${allBoundMs} peak_rss_mib=${final.peakMiB.toFixed(1)} settled_rss_mib=${settledRss.toFixed(1)} idle_cpu_pct=${idleCpuPct.toFixed(2)} ` +
      `idle_requests=${idleRequests} resync=${resync} pods_per_s=${(vms / (allPodsMs / 1000)).toFixed(1)} burst_operator_cpu_pct=${burst.operatorPct} ` +
      `burst_apiserver_cpu_pct=${burst.apiServerPct} load=${burst.load} accel=none node_flags=${nodeFlags.join(',') || 'none'} entry=${entry.kind} ` +
      `requests_per_vm_by_resource=${byResource} workers=${st.workers} eviction_strategy=${st.evictionStrategy} api_qps=${String(st.apiQps ?? 'default')} rate_limit_wait_s=${rateLimitWait} burst_cpu_pct=${burstAll.text} apiserver_cpu_ms_per_vm=${perVm(burstAll.ms.get('apiserver'), vms)}` +
      ` resettled_peak_rss_mib=${resettled.peakMiB.toFixed(1)} resettled_rss_mib=${resettled.rssMiB.toFixed(1)} ${memoryFields('burst', memory.peaks('burst'))} ${memoryFields('outage', memory.peaks('outage'))}` +
      cpuBudgetFields('to_all_pods_', toAllPods, vms) +
      floorFields(floor, vms, allPodsMs) +
      etcdFields('start_', etcdAtStart) +
      ` quiet_wait_s=${(quiet.waitedMs / 1000).toFixed(0)} busy_before_pct=${quiet.busyPct.toFixed(0)}` +
      ` operator=${label}`;
    // Printed before the clean-up (minutes for thousands of VMs), whatever the figures.
    process.stdout.write(`${line}\n`);
    return line;
  } finally {
    stopWatch.abort();
    stopSampling.abort();
    operator.kill();
    await operator.exited;
    await releaseVms(st.admin, s, vms);
    try {
      // The VMs (their finalizers released above), then their pods, which no kubelet ever
      // ends: one delete-collection each, sent again while the API server cuts it short.
      await deleteCollection(st.admin, `/apis/keyvirt.io/v1alpha1/namespaces/${s.namespace}/virtualmachines`, say);
      await deleteCollection(st.admin, `/api/v1/namespaces/${s.namespace}/pods`, say);
      // The launcher Secrets too, at once: the garbage collector would delete them one by
      // one at its client's rate (20/s), for minutes after a burst of thousands.
      await deleteCollection(st.admin, `/api/v1/namespaces/${s.namespace}/secrets`, say);
    } finally {
      await s.cleanup();
    }
    // Not thrown: a failed run's own error is the one to report.
    await untilNamespaceGone(st.admin, s.namespace, say).catch((err: unknown) => say(String(err)));
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const vms = flag(args, '--vms', 1000);
  const nodeCount = flag(args, '--nodes', 10);
  const workers = flag(args, '--workers', 8);
  const baseline = stringFlag(args, '--baseline');
  const baselineLast = args.includes('--baseline-last');
  const cpuProfDir = stringFlag(args, '--cpu-prof');
  const withFloor = !args.includes('--no-floor');
  const apiQps = args.includes('--api-qps') ? flag(args, '--api-qps', 200) : undefined;
  const evictionStrategy = stringFlag(args, '--eviction-strategy') ?? 'LiveMigrate';
  if (evictionStrategy !== 'LiveMigrate' && evictionStrategy !== 'Shutdown') throw new Error('--eviction-strategy must be LiveMigrate or Shutdown');
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-scale-nodes');
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const admin = new KubeClient(kc, 'keyvirt-bench');
  let api: ApiOutageProxy | undefined;
  let kwok: KwokNodes | undefined;
  try {
    kwok = await startKwokNodes(cluster, { label: { key: TEST_RUN_LABEL, value: s.runId }, count: nodeCount, namePrefix: `kwok-${s.runId}`, runPods: false, dir: s.dir });
    process.stdout.write(`operator-scale: ${nodeCount} kwok nodes Ready\n`);
    const logDir = await mkdtemp(path.join(tmpdir(), 'keyvirt-operator-scale-'));
    process.stdout.write(`operator-scale: operator logs in ${logDir}\n`);
    api = await startApiOutageProxy({ host: cluster.apiServer.host, port: cluster.apiServer.port });
    if (cpuProfDir !== undefined) await mkdir(cpuProfDir, { recursive: true });
    const control = await processesOf(cluster.layout.binDir, ['kube-apiserver', 'etcd', 'kube-scheduler', 'kube-controller-manager']);
    const others: CpuSubjects = new Map<string, readonly number[] | 'self'>([
      ['apiserver', control.get('kube-apiserver') ?? []],
      ['etcd', control.get('etcd') ?? []],
      ['scheduler', control.get('kube-scheduler') ?? []],
      ['controller-manager', control.get('kube-controller-manager') ?? []],
      ['kwok', kwok.pid === undefined ? [] : [kwok.pid]],
      ['bench', 'self'],
    ]);
    process.stdout.write(`operator-scale: CPU measured of ${[...others].map(([k, v]) => `${k}=${v === 'self' ? process.pid : v.join('+') || 'none'}`).join(' ')}\n`);
    const setting: Setting = { cluster, admin, api, kwokLabel: s.runId, vms, workers, logDir, apiServerPid: await apiServerPid(cluster.apiServer.port), others, cpuProfDir, apiQps, evictionStrategy, etcdUrl: `http://127.0.0.1:${ports.etcdClient}` };
    let floor: Floor | undefined;
    if (withFloor) {
      const quiet = await untilMachineQuiet((line) => process.stdout.write(`operator-scale[floor]: ${line}\n`));
      process.stdout.write(`operator-scale[floor]: ${quiet.busyPct.toFixed(0)} % of a core busy before it, after ${(quiet.waitedMs / 1000).toFixed(0)} s\n`);
      floor = await runFloor(setting, kwok.names);
    }
    const lines: string[] = [];
    const runBaseline = async (): Promise<void> => {
      if (baseline !== undefined) lines.push(await runOnce(setting, baseline, await treeAt(baseline, s.dir), floor));
    };
    if (!baselineLast) await runBaseline();
    lines.push(await runOnce(setting, 'working-tree', repoRoot, floor));
    if (baselineLast) await runBaseline();
    // Every run's line again, together, once all are done.
    for (const l of lines) process.stdout.write(`${l}\n`);
  } finally {
    await api?.close();
    kwok?.stop();
    await s.cleanup();
    cluster.release();
  }
}

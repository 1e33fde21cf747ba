// operator-scale's floor: what the API server (with etcd, the scheduler, the controller
// manager and kwok beside it) does for N VMs without the operator. The N VMs are created
// first, 32 at a time as the burst creates them, with no operator watching; then the
// launcher pods the operator would create for them (launcher-pod-floor.ts) are POSTed at
// the operator's concurrency and timed to every pod created and bound. The API server's
// CPU per VM creation and per pod is reported beside the times, and the whole machine's
// from the first VM to the last pod (cpu-budget.ts).
import { loadavg } from 'node:os';
import type { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import type { TestCluster } from './cluster.ts';
import { postPods, readNodes, renderFloorPods } from './launcher-pod-floor.ts';
import { cpuSince, type CpuSubjects } from './process-cpu.ts';
import { cpuBudgetFields } from './cpu-budget.ts';
import { BURST_IN_FLIGHT, createAll, deleteCollection, untilNamespaceGone, perVm, podTimes, untilBound, untilCreated, vmManifest, type EvictionStrategy } from './scale-burst.ts';
import { scratch } from '../operator/vm-fixtures.ts';

/** What the floor needs of the benchmark's setting. */
export interface FloorSetting {
  readonly cluster: TestCluster;
  readonly admin: KubeClient;
  readonly kwokLabel: string;
  readonly vms: number;
  readonly workers: number;
  readonly evictionStrategy: EvictionStrategy;
  /** The processes whose CPU is reported (control plane, kwok, the benchmark). */
  readonly others: CpuSubjects;
}

/** The floor's figures, appended to every operator's BENCH line. */
export interface Floor {
  readonly allPodsMs: number;
  readonly allBoundMs: number;
  readonly cpu: string;
  /** The API server's CPU from the first POST until every pod is bound, per pod. */
  readonly apiServerMsPerPod: string;
  /** The VMs' creation before the pods: its time, and the API server's CPU per VM. */
  readonly vmsMs: number;
  readonly apiServerMsPerVmCreate: string;
  readonly load: string;
  /** The machine's CPU from the first VM's creation until the last pod: cpu-budget.ts's fields. */
  readonly budget: string;
}

/** The floor's fields of a BENCH line (none without a floor). */
export function floorFields(floor: Floor | undefined, vms: number, allPodsMs: number): string {
  if (floor === undefined) return '';
  return (
    ` floor_all_pods_ms=${floor.allPodsMs} floor_all_bound_ms=${floor.allBoundMs} floor_pods_per_s=${(vms / (floor.allPodsMs / 1000)).toFixed(1)} ` +
    `all_pods_over_floor=${(allPodsMs / floor.allPodsMs).toFixed(2)} floor_cpu_pct=${floor.cpu} floor_load=${floor.load} ` +
    `floor_apiserver_cpu_ms_per_pod=${floor.apiServerMsPerPod} floor_vms_ms=${floor.vmsMs} floor_apiserver_cpu_ms_per_vm_create=${floor.apiServerMsPerVmCreate}` +
    floor.budget
  );
}

/** The floor: the VMs, then their launcher pods, created with no operator, timed as the operator's are. */
export async function runFloor(st: FloorSetting, nodeNames: readonly string[]): Promise<Floor> {
  const s = await scratch(st.cluster, 'kv-bench-floor');
  const stopWatch = new AbortController();
  const say = (line: string): void => void process.stdout.write(`operator-scale[floor]: ${line}\n`);
  try {
    const nodes = await readNodes(st.admin, nodeNames);
    const manifests = Array.from({ length: st.vms }, (_, i) => vmManifest(s, st.kwokLabel, i, st.evictionStrategy));
    const pods = renderFloorPods(manifests, s.namespace, nodes);
    const { created, bound, synced } = podTimes(st.admin, s.namespace, stopWatch.signal);
    await synced;
    const loadBefore = loadavg()[0] ?? 0;
    // The VMs themselves first, as the burst creates them (no operator watches them): what
    // their creation costs the API server, before any launcher pod.
    const vmCpu = await cpuSince(st.others);
    const toAllPods = await cpuSince(st.others);
    const atAllPods = untilCreated(created, st.vms, stopWatch.signal).then(() => toAllPods());
    atAllPods.catch(() => undefined); // awaited below; a run that fails first must not leave it unhandled
    const vmsStarted = Date.now();
    await createAll(st.admin, s.namespace, manifests, BURST_IN_FLIGHT);
    const vmsMs = Date.now() - vmsStarted;
    const vmUsed = await vmCpu();
    say(`${st.vms} VMs created in ${vmsMs} ms, ${BURST_IN_FLIGHT} at a time; CPU ${vmUsed.text}`);
    const cpu = await cpuSince(st.others);
    const started = Date.now();
    await postPods(st.admin, s.namespace, pods, st.workers);
    say(`${st.vms} launcher pods POSTed in ${Date.now() - started} ms, ${st.workers} at a time`);
    await untilBound(created, bound, st.vms, started, say);
    const used = await cpu();
    const budget = cpuBudgetFields('floor_', await atAllPods, st.vms);
    const floor: Floor = {
      allPodsMs: Math.max(...created.values()) - started,
      allBoundMs: Math.max(...bound.values()) - started,
      cpu: used.text,
      apiServerMsPerPod: perVm(used.ms.get('apiserver'), st.vms),
      vmsMs,
      apiServerMsPerVmCreate: perVm(vmUsed.ms.get('apiserver'), st.vms),
      load: `${loadBefore.toFixed(1)}-${(loadavg()[0] ?? 0).toFixed(1)}`,
      budget,
    };
    say(`every pod created after ${floor.allPodsMs} ms, bound after ${floor.allBoundMs} ms; CPU ${floor.cpu}; load ${floor.load}`);
    return floor;
  } finally {
    stopWatch.abort();
    // No finalizer on the VMs (no operator saw them): gone before the operators run.
    try {
      await deleteCollection(st.admin, `/api/v1/namespaces/${s.namespace}/pods`, say);
      await deleteCollection(st.admin, `/apis/keyvirt.io/v1alpha1/namespaces/${s.namespace}/virtualmachines`, say);
    } finally {
      await s.cleanup();
    }
    // Not thrown: a failed run's own error is the one to report.
    await untilNamespaceGone(st.admin, s.namespace, say).catch((err: unknown) => say(String(err)));
  }
}

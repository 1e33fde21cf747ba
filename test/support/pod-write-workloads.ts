// The pod writes of the admission-cost benchmark and what each costs the API server.
// Launcher pods are rendered by the operator's own functions (launcher-pod.ts: labels,
// image, hardened securityContext, volumes, pinned node affinity) for VMs that exist
// only here; plain pods are what any workload's pods look like to admission (no keyvirt.io
// label, a container with requests). Neither kind ever runs: each carries a scheduling
// gate, so no scheduler places it and no kubelet or controller writes it. (A pod bound by
// spec.nodeName to a node that does not exist would be deleted by the controller
// manager's pod garbage collector about 40 s later, its status written first: writes of
// its own inside the measured windows.) No owner reference either: the VM does not
// exist, and the garbage collector would delete the pod.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { VirtualMachine } from '@keyvirt/crds';
import { z } from 'zod';
import type { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { configHash, launcherConfig, renderLauncherPod } from '../../operator/src/vm/launcher-pod.ts';
import { pinToNode } from '../../operator/src/vm/placement.ts';
import { eventually } from './cluster.ts';
import { BENCH_LAUNCHER_SETTINGS } from './launcher-pod-floor.ts';
import { processCpuMs } from './process-cpu.ts';

/** The gate that keeps the benchmark's pods from being scheduled. */
export const BENCH_SCHEDULING_GATE = 'keyvirt.io/admission-cost-bench';
/** The node launcher pods are pinned to: none of that name exists. */
const NO_SUCH_NODE = 'admission-cost-no-such-node';
/** The label the label-update workload writes (not a keyvirt.io one). */
export const TOUCH_LABEL = 'bench.example.com/touched';

const podShape = z.looseObject({ metadata: z.looseObject({ name: z.string() }), spec: z.looseObject({}) });

function gated(pod: unknown): z.infer<typeof podShape> {
  const p = podShape.parse(pod);
  const metadata = Object.fromEntries(Object.entries(p.metadata).filter(([k]) => k !== 'ownerReferences'));
  return { ...p, metadata: { ...metadata, name: p.metadata.name }, spec: { ...p.spec, schedulingGates: [{ name: BENCH_SCHEDULING_GATE }] } };
}

/** The launcher pod of VM `name` in `namespace`, as the operator renders it, gated and without owner. */
export function launcherPod(namespace: string, name: string): z.infer<typeof podShape> {
  const vm = VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace, uid: randomUUID(), labels: { app: 'admission-cost' } },
    spec: { runStrategy: 'Always', template: { memory: { size: '128Mi' }, allowEmulation: true, guestAgent: false } },
  });
  const node = { metadata: { name: NO_SUCH_NODE, labels: { 'kubernetes.io/hostname': NO_SUCH_NODE } } };
  const input = { vm, settings: BENCH_LAUNCHER_SETTINGS, affinity: pinToNode(node, vm), devices: [], disks: [] };
  return gated(renderLauncherPod(input, configHash(launcherConfig(input))));
}

/** A pod as any other workload writes one: labels of its own, one container with requests. */
export function plainPod(namespace: string, name: string): z.infer<typeof podShape> {
  return gated({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: 'admission-cost-plain', 'app.kubernetes.io/name': 'web', tier: 'frontend' } },
    spec: {
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      containers: [
        {
          name: 'web',
          image: 'registry.example.com/web:1.0',
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '128Mi' } },
          securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
        },
      ],
    },
  });
}

/** The API server's CPU and the wall time over one workload. */
export interface WorkloadCost {
  /** From the first write until the API server is back to its rate before the writes (`tailMs` after the last answer). */
  readonly apiServerCpuMs: number;
  /** First write → last answer. */
  readonly wallMs: number;
  readonly tailMs: number;
}

const SAMPLE_MS = 250;
/** The longest tail: past it, whatever else the API server does is another client's. */
const MAX_TAIL_MS = 10_000;

async function cpuOrGone(pid: number): Promise<number> {
  const ms = await processCpuMs(pid);
  if (ms === undefined) throw new Error(`the kube-apiserver process ${pid} is gone`);
  return ms;
}

/** The process's CPU over the next `ms`, in cores. */
async function rateOver(pid: number, ms: number): Promise<number> {
  const before = await cpuOrGone(pid);
  await sleep(ms);
  return ((await cpuOrGone(pid)) - before) / ms;
}

/**
 * Runs `workload`, measuring the API server process `apiPid` from its first write until
 * the API server's CPU falls back to its rate of the second before (plus a tenth of a
 * core): the API server answers a write before it has served the write's watch events,
 * and under contention that work would otherwise land in the next workload's window.
 */
export async function measured(apiPid: number, workload: () => Promise<void>): Promise<WorkloadCost> {
  const background = await rateOver(apiPid, 1000);
  const cpuBefore = await cpuOrGone(apiPid);
  const started = performance.now();
  await workload();
  const wallMs = performance.now() - started;
  let tailMs = 0;
  let rate: number;
  do {
    rate = await rateOver(apiPid, SAMPLE_MS);
    tailMs += SAMPLE_MS;
  } while (rate > background + 0.1 && tailMs < MAX_TAIL_MS);
  return { apiServerCpuMs: (await cpuOrGone(apiPid)) - cpuBefore, wallMs, tailMs };
}

/** Deletes every pod of `namespace` (one collection request, no grace) and waits until none is left. */
export async function deleteAllPods(client: KubeClient, namespace: string): Promise<void> {
  const pods = `/api/v1/namespaces/${namespace}/pods`;
  await client.request('DELETE', pods, { body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 }, timeoutMs: 300_000 });
  const list = z.object({ items: z.array(z.unknown()) });
  await eventually(`every pod of ${namespace} gone`, async () => (list.parse(await client.request('GET', pods, { query: { limit: 1 } })).items.length === 0 ? true : undefined), 300_000, 500);
}

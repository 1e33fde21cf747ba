// The floor of a launcher-pod burst: what the API server (with etcd, the scheduler and
// kwok beside it) does without the operator. The launcher pods the operator would create
// for N VMs — rendered by the operator's own functions, same labels, node selector,
// tolerations and pinning affinity (nodes taken in turn, as the operator's placement
// spreads equal nodes) — are POSTed by a plain client, `inFlight` at a time (the
// operator's workers). Only the pods: the operator also sends a Secret, the finalizer,
// a status and an event per VM. The pods carry no owner reference: no VM exists, and
// the garbage collector would delete them as they are created. scale-floor.ts runs the
// floor with them.
import { randomUUID } from 'node:crypto';
import { VirtualMachine } from '@keyvirt/crds';
import { nodeSchema, type Node } from '../../operator/src/runtime/core-schemas.ts';
import type { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { coreTypes, objectPath } from '../../operator/src/runtime/resource.ts';
import { configHash, launcherConfig, renderLauncherPod, type LauncherSettings } from '../../operator/src/vm/launcher-pod.ts';
import { pinToNode } from '../../operator/src/vm/placement.ts';
import { runWrites } from './bounded-writes.ts';

/** The operator's launcher settings when started as the benchmarks start it (its defaults, emulation allowed). */
export const BENCH_LAUNCHER_SETTINGS: LauncherSettings = {
  image: 'localhost/keyvirt/launcher:0.1.0',
  args: [],
  imagePullPolicy: 'IfNotPresent',
  allowEmulation: true,
  podNetwork: 'user-mode',
};

function withoutOwners(pod: unknown): unknown {
  if (typeof pod !== 'object' || pod === null || !('metadata' in pod)) return pod;
  const { metadata } = pod;
  if (typeof metadata !== 'object' || metadata === null) return pod;
  return { ...pod, metadata: { ...metadata, ownerReferences: undefined } };
}

/** The nodes pods are pinned to, read from the API server. */
export async function readNodes(client: KubeClient, names: readonly string[]): Promise<Node[]> {
  return Promise.all(names.map(async (name) => nodeSchema.parse(await client.get(objectPath(coreTypes.node, { name })))));
}

/**
 * The launcher pods of `manifests` (VirtualMachine objects as a user writes them), in
 * `namespace`, each given a fresh uid as the API server would.
 */
export function renderFloorPods(manifests: readonly unknown[], namespace: string, nodes: readonly Node[], settings: LauncherSettings = BENCH_LAUNCHER_SETTINGS): unknown[] {
  if (nodes.length === 0) throw new Error('the floor needs at least one node');
  return manifests.map((manifest, i) => {
    const parsed = VirtualMachine.parse(manifest);
    const vm = { ...parsed, metadata: { ...parsed.metadata, namespace, uid: randomUUID() } };
    const node = nodes[i % nodes.length];
    if (node === undefined) throw new Error('no node');
    const input = { vm, settings, affinity: pinToNode(node, vm), devices: [], disks: [] };
    return withoutOwners(renderLauncherPod(input, configHash(launcherConfig(input))));
  });
}

/** POSTs every pod, `inFlight` at a time, as soon as the previous answer of that lane came. */
export async function postPods(client: KubeClient, namespace: string, pods: readonly unknown[], inFlight: number): Promise<void> {
  await runWrites(pods.length, inFlight, (i) => client.create(`/api/v1/namespaces/${namespace}/pods`, pods[i]));
}

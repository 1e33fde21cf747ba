// Which launcher pods the node agent prepares, and with what (ADR 0094): a pure reading
// of the pod and of its VirtualMachine, both from the API server. The operator asks by
// the pod annotation keyvirt.io/pod-network=node-agent; the parameters never come from
// the pod: the binding and ports are the VM's (the CRD validated them), the VM is the
// pod's controlling owner (same namespace, same UID as the pod's VM label). A pod of
// another shape, or whose VM does not own it, is refused with a reason.
import { z } from 'zod';
import { LABEL_VM, LABEL_VM_UID } from '../../vm/names.ts';
import { ANNOTATION_POD_NETWORK, POD_NETWORK_NODE_AGENT } from '../../vm/launcher-pod-network.ts';
import { isLauncherPort } from './pod-network-plan.ts';
import type { ForwardedPort } from './pod-network-plan.ts';

const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const LauncherPodSchema = z.object({
  metadata: z.object({
    namespace: z.string().min(1),
    name: z.string().min(1),
    uid: z.string().regex(UID),
    labels: z.record(z.string(), z.string()).default({}),
    annotations: z.record(z.string(), z.string()).default({}),
    ownerReferences: z.array(z.object({ apiVersion: z.string(), kind: z.string(), name: z.string(), uid: z.string(), controller: z.boolean().optional() })).default([]),
    deletionTimestamp: z.unknown().optional(),
  }),
  spec: z.object({ nodeName: z.string().optional() }),
  status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).default({}),
});
export type LauncherPodView = z.infer<typeof LauncherPodSchema>;

export const VmViewSchema = z.object({
  metadata: z.object({ namespace: z.string(), name: z.string(), uid: z.string() }),
  spec: z.object({
    template: z.object({
      interfaces: z.array(z.object({
        name: z.string(),
        binding: z.enum(['masquerade', 'bridge']).default('masquerade'),
        ports: z.array(z.object({ port: z.int().min(1).max(65_535), protocol: z.enum(['TCP', 'UDP']).default('TCP') })).max(64).optional(),
      })).max(16).default([]),
    }),
  }),
});
export type VmView = z.infer<typeof VmViewSchema>;

export interface PodNetworkRequest {
  namespace: string;
  pod: string;
  podUid: string;
  interfaceName: string;
  binding: 'masquerade' | 'bridge';
  ports?: ForwardedPort[] | undefined;
}

export type RequestDecision =
  | { kind: 'skip' }
  | { kind: 'refuse'; reason: string }
  | { kind: 'prepare'; request: PodNetworkRequest };

/** Whether a pod asks for the node's pod network set-up at all (before reading its VM). */
export function asksForPodNetwork(pod: LauncherPodView, node: string): boolean {
  return pod.metadata.annotations[ANNOTATION_POD_NETWORK] === POD_NETWORK_NODE_AGENT && pod.spec.nodeName === node
    && pod.metadata.deletionTimestamp === undefined && (pod.status.phase === 'Pending' || pod.status.phase === 'Running');
}

/** What to do for `pod` on `node` given its VM (undefined when the VM is gone). */
export function decidePodNetwork(pod: LauncherPodView, vm: VmView | undefined, node: string): RequestDecision {
  if (!asksForPodNetwork(pod, node)) return { kind: 'skip' };
  const { metadata } = pod;
  const vmName = metadata.labels[LABEL_VM];
  const vmUid = metadata.labels[LABEL_VM_UID];
  if (vmName === undefined || vmUid === undefined) return { kind: 'refuse', reason: 'the pod names no VM' };
  const owner = metadata.ownerReferences.find((o) => o.controller === true);
  if (owner?.kind !== 'VirtualMachine' || !owner.apiVersion.startsWith('keyvirt.io/') || owner.uid !== vmUid || owner.name !== vmName) {
    return { kind: 'refuse', reason: 'the pod is not controlled by the VM it names' };
  }
  if (vm === undefined || vm.metadata.uid !== vmUid || vm.metadata.namespace !== metadata.namespace || vm.metadata.name !== vmName) {
    return { kind: 'refuse', reason: 'the pod\'s VM does not exist' };
  }
  const [iface] = vm.spec.template.interfaces;
  if (iface === undefined) return { kind: 'refuse', reason: 'the VM has no interface' };
  const ports = iface.binding === 'masquerade' ? iface.ports?.map((p) => ({ port: p.port, protocol: p.protocol })) : undefined;
  const reserved = ports?.find((p) => isLauncherPort(p.port));
  if (reserved !== undefined) return { kind: 'refuse', reason: `port ${reserved.port} is the launcher's own` };
  return {
    kind: 'prepare',
    request: { namespace: metadata.namespace, pod: metadata.name, podUid: metadata.uid, interfaceName: iface.name, binding: iface.binding, ports },
  };
}

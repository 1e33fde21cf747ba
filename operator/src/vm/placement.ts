// How the VM controller asks where a launcher pod may run. The answer becomes required
// node affinity on the pod, so the kube-scheduler still checks fit and binds.
import { parseQuantity, type VirtualMachine } from '@keyvirt/crds';
import { advertisedDevices } from '../node-agent/device-plugin/resource-names.ts';
import type { Node } from '../runtime/core-schemas.ts';
import type { NodeUsageSource } from '../scheduler/node-usage-ledger.ts';

export interface VmPlacement {
  readonly kind: 'Placement';
  readonly node: string;
  /** core/v1 Affinity for the launcher pod: the VM's own plus a required term for `node`. */
  readonly affinity: Record<string, unknown>;
  /** The node offers hardware KVM. */
  readonly nodeHasKvm: boolean;
  /** The device resources the node advertises (devices.keyvirt.io/…, allocatable above zero). */
  readonly devices: readonly string[];
}

export interface VmUnschedulable {
  readonly kind: 'Unschedulable';
  /** A sentence a person understands: "0/2 nodes are available: 2 Insufficient memory." */
  readonly message: string;
}

export interface PlacementQuery {
  readonly vm: VirtualMachine;
  /** The launcher pod's requests (core/v1 ResourceList). */
  readonly requests: Readonly<Record<string, string>>;
  readonly allowEmulation: boolean;
  /** A node the VM's disks pin it to, if any. */
  readonly requiredNode?: string | undefined;
}

export interface PlacementDecider {
  /** `usage`: what the pods already ask of each node (a ledger kept from the pod cache, never a walk over it). */
  place(query: PlacementQuery, nodes: readonly Node[], usage: NodeUsageSource): VmPlacement | VmUnschedulable;
}

export const KVM_NODE_LABEL = 'keyvirt.io/kvm';

export function nodeHasKvm(node: Node): boolean {
  return node.metadata.labels?.[KVM_NODE_LABEL] === 'true';
}

function quantity(v: string | undefined): number {
  return v === undefined ? 0 : (parseQuantity(v) ?? 0);
}

function isReady(node: Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** Required node affinity pinning the pod to `node` (by its hostname label, else by name). */
export function pinToNode(node: Node, vm: VirtualMachine): Record<string, unknown> {
  const hostname = node.metadata.labels?.['kubernetes.io/hostname'];
  const term =
    hostname !== undefined
      ? { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [hostname] }] }
      : { matchFields: [{ key: 'metadata.name', operator: 'In', values: [node.metadata.name] }] };
  return {
    ...(vm.spec.affinity ?? {}),
    nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [term] } },
  };
}

/** Why `node` cannot take the VM, or its free memory when it can; `used`: its pods' requests (cpu in millicores). */
function assess(node: Node, query: PlacementQuery, used: { cpu: number; memory: number }): string | { free: number } {
  const name = node.metadata.name;
  if (query.requiredNode !== undefined && name !== query.requiredNode) return "node(s) didn't hold the VM's local disks";
  if (!isReady(node)) return 'node(s) were not Ready';
  if (node.spec?.unschedulable === true) return 'node(s) were unschedulable';
  if (!nodeHasKvm(node) && !query.allowEmulation) return 'node(s) had no hardware KVM and emulation is not allowed';
  if (Object.entries(query.vm.spec.nodeSelector ?? {}).some(([k, v]) => node.metadata.labels?.[k] !== v)) {
    return "node(s) didn't match the VM's node selector";
  }
  const freeMemory = quantity(node.status?.allocatable?.memory) - used.memory;
  const freeCpu = quantity(node.status?.allocatable?.cpu) - used.cpu / 1000;
  if (freeMemory < quantity(query.requests.memory)) return 'Insufficient memory';
  if (freeCpu < quantity(query.requests.cpu)) return 'Insufficient cpu';
  return { free: freeMemory };
}

/**
 * The built-in decider: Ready, schedulable nodes with KVM (or emulation allowed), the
 * VM's node selector, and room for the requests; the emptiest node wins. The full
 * scheduler (CPU models, devices, affinity, policies) plugs in through the same interface.
 */
export const fitDecider: PlacementDecider = {
  place(query, nodes, usage) {
    const reasons = new Map<string, number>();
    let best: { node: Node; free: number } | undefined;
    const usageByNode = usage.usageByNode(nodes);
    for (const node of nodes) {
      const requested = usageByNode.get(node.metadata.name)?.requested;
      const verdict = assess(node, query, { cpu: requested?.get('cpu') ?? 0, memory: requested?.get('memory') ?? 0 });
      if (typeof verdict === 'string') reasons.set(verdict, (reasons.get(verdict) ?? 0) + 1);
      else if (best === undefined || verdict.free > best.free) best = { node, free: verdict.free };
    }
    if (best !== undefined) {
      return {
        kind: 'Placement',
        node: best.node.metadata.name,
        affinity: pinToNode(best.node, query.vm),
        nodeHasKvm: nodeHasKvm(best.node),
        devices: advertisedDevices(best.node.status?.allocatable),
      };
    }
    const parts = [...reasons].sort((a, b) => b[1] - a[1]).map(([why, n]) => `${n} ${why}`);
    return {
      kind: 'Unschedulable',
      message: nodes.length === 0 ? '0/0 nodes are available: the cluster has no nodes.' : `0/${nodes.length} nodes are available: ${parts.join(', ')}.`,
    };
  },
};

// The scheduler's vocabulary: what a VM asks of a node, the cluster's scheduling
// policy, and the two possible answers.
import type { Affinity, Toleration } from './kube-shapes.ts';

export interface PlacementRequest {
  /** Everything the launcher pod will request: guest plus launcher/QEMU overhead. `cpu` in millicores, memory in bytes, devices as counts. */
  readonly resources: ReadonlyMap<string, number>;
  /** A named CPU model the node must be able to run; absent for host-model and host-passthrough. */
  readonly cpuModel?: string | undefined;
  /** CPU features (QEMU or cpuinfo names) the node must have. */
  readonly requiredCpuFeatures?: readonly string[] | undefined;
  /** CPU features the node must not have. */
  readonly forbiddenCpuFeatures?: readonly string[] | undefined;
  /** When false the node must offer hardware KVM; when true TCG emulation is acceptable. */
  readonly allowEmulation: boolean;
  readonly nodeSelector?: Readonly<Record<string, string>> | undefined;
  readonly affinity?: Affinity | undefined;
  readonly tolerations?: readonly Toleration[] | undefined;
  /** The only node the VM may run on (its disks are on a storage domain local to that node). */
  readonly requiredNode?: string | undefined;
}

export type SchedulingPolicyName = 'evenly_distributed' | 'power_saving';

/** oVirt's cluster scheduling policies and their parameters (utilisation in percent). */
export interface SchedulingPolicy {
  readonly name: SchedulingPolicyName;
  /** A node above this utilisation is over-utilised (oVirt HighUtilization, default 80). */
  readonly highUtilization: number;
  /** Below this a node is under-utilised, a candidate to empty (oVirt LowUtilization, default 20; power_saving only). */
  readonly lowUtilization: number;
}

export const DEFAULT_SCHEDULING_POLICY: SchedulingPolicy = {
  name: 'evenly_distributed',
  highUtilization: 80,
  lowUtilization: 20,
};

/** Why one node cannot take the VM: `summary` is counted across nodes, `detail` is this node's story. */
export interface NodeRejection {
  readonly summary: string;
  readonly detail: string;
}

export interface RejectedNode {
  readonly node: string;
  readonly reasons: readonly NodeRejection[];
}

export interface Placement {
  readonly kind: 'Placement';
  readonly node: string;
  /** The affinity to put on the launcher pod: the VM's own plus a required term for `node`. */
  readonly affinity: Affinity;
  /** Nodes that passed the filters, best first (for logs and events). */
  readonly ranking: readonly string[];
}

export interface Unschedulable {
  readonly kind: 'Unschedulable';
  /** "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were unschedulable." */
  readonly message: string;
  readonly rejected: readonly RejectedNode[];
}

export type PlacementResult = Placement | Unschedulable;

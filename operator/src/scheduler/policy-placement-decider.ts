// The VM controller's PlacementDecider backed by the full scheduler: filters,
// the cluster's weighting policy, and the pinning affinity for the launcher pod.
import type { Node } from '../runtime/core-schemas.ts';
import type { NodeUsageSource } from './node-usage-ledger.ts';
import type { PlacementDecider, PlacementQuery, VmPlacement, VmUnschedulable } from '../vm/placement.ts';
import { advertisedDevices } from '../node-agent/device-plugin/resource-names.ts';
import { KVM_LABEL } from '../node-agent/node-label-keys.ts';
import { DEFAULT_SCHEDULING_POLICY, type SchedulingPolicy } from './placement-types.ts';
import { placementRequestForVm } from './vm-placement-request.ts';
import { placeVmWithUsage, rejectionDetails } from './vm-scheduler.ts';

export interface PolicyPlacementDeciderOptions {
  readonly policy?: SchedulingPolicy | undefined;
  /** Called with the per-node reasons when nothing fits (for logs). */
  readonly onUnschedulable?: ((details: string) => void) | undefined;
}

export function policyPlacementDecider(options: PolicyPlacementDeciderOptions = {}): PlacementDecider {
  const policy = options.policy ?? DEFAULT_SCHEDULING_POLICY;
  return {
    place(query: PlacementQuery, nodes: readonly Node[], usage: NodeUsageSource): VmPlacement | VmUnschedulable {
      const request = {
        ...placementRequestForVm(query.vm, { requests: query.requests }, query.allowEmulation),
        requiredNode: query.requiredNode,
      };
      const result = placeVmWithUsage(request, nodes, usage.usageByNode(nodes), policy);
      if (result.kind === 'Unschedulable') {
        options.onUnschedulable?.(rejectionDetails(result.rejected));
        return { kind: 'Unschedulable', message: result.message };
      }
      const chosen = nodes.find((n) => n.metadata.name === result.node);
      return {
        kind: 'Placement',
        node: result.node,
        affinity: { ...result.affinity },
        nodeHasKvm: chosen?.metadata.labels?.[KVM_LABEL] === 'true',
        devices: advertisedDevices(chosen?.status?.allocatable),
      };
    },
  };
}

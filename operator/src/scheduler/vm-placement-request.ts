// From a VirtualMachine to what the scheduler asks of a node. The resources are
// the launcher pod's requests as the VM controller renders them (guest plus the
// launcher/QEMU overhead), so the scheduler and the kube-scheduler count the same.
import {
  CPU_MODEL_HOST_MODEL,
  CPU_MODEL_HOST_PASSTHROUGH,
  type VirtualMachine,
} from '@keyvirt/crds';
import { NodeAffinity, type Affinity } from './kube-shapes.ts';
import { resourceAmounts } from './node-usage.ts';
import type { PlacementRequest } from './placement-types.ts';

export class InvalidNodeAffinityError extends Error {
  override readonly name = 'InvalidNodeAffinityError';
}

/** QEMU versions its models ("Skylake-Server-v4"); nodes are labelled with the unversioned names. */
export function unversionedCpuModel(model: string): string {
  return model.replace(/-v\d+$/, '');
}

function vmAffinity(vm: VirtualMachine): Affinity | undefined {
  const affinity = vm.spec.affinity;
  if (affinity === undefined) return undefined;
  let nodeAffinity: NodeAffinity | undefined;
  if (affinity.nodeAffinity !== undefined) {
    const parsed = NodeAffinity.safeParse(affinity.nodeAffinity);
    if (!parsed.success) {
      throw new InvalidNodeAffinityError(`spec.affinity.nodeAffinity is not a valid core/v1 NodeAffinity: ${parsed.error.message}`);
    }
    nodeAffinity = parsed.data;
  }
  return { nodeAffinity, podAffinity: affinity.podAffinity, podAntiAffinity: affinity.podAntiAffinity };
}

export interface LauncherPodRequests {
  /** The launcher pod's total requests (core/v1 ResourceList), including host devices. */
  readonly requests: Readonly<Record<string, string>>;
}

/**
 * The placement request for a VM whose launcher pod asks for `pod.requests`.
 * `clusterAllowsEmulation` is the cluster-wide switch (KubeVirt's useEmulation);
 * a VM may also allow emulation for itself.
 */
export function placementRequestForVm(
  vm: VirtualMachine,
  pod: LauncherPodRequests,
  clusterAllowsEmulation: boolean,
): PlacementRequest {
  const model = vm.spec.template.cpu.model;
  const named = model !== CPU_MODEL_HOST_MODEL && model !== CPU_MODEL_HOST_PASSTHROUGH;
  return {
    resources: resourceAmounts(pod.requests),
    cpuModel: named ? unversionedCpuModel(model) : undefined,
    allowEmulation: clusterAllowsEmulation || vm.spec.template.allowEmulation,
    nodeSelector: vm.spec.nodeSelector,
    affinity: vmAffinity(vm),
    tolerations: vm.spec.tolerations,
  };
}

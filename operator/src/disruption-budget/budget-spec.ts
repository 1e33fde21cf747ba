// The PodDisruptionBudget that keeps an eviction (`kubectl drain`) from killing a VM
// whose evictionStrategy is LiveMigrate, as pure functions of the VM and the budget
// that exists. The evacuation controller moves such a VM away by live migration and
// the migration deletes the source pod itself (DELETE, which no budget stops).
//
// Why `minAvailable: 2`: a VM has at most two launcher pods at a time (its source and,
// during a migration, one target), and both carry the VM's uid label. An integer
// minAvailable needs no scale subresource on the owner (maxUnavailable and percentages
// do, and the disruption controller fails to sync without one), and with two as the
// floor the disruption controller computes `disruptionsAllowed: 0` whether one or two
// pods run: an eviction of a running launcher pod is always refused with 429, also
// while a migration target exists. Pending pods hold no guest and the eviction API
// lets them go regardless of any budget.
import type { VirtualMachine } from '@keyvirt/crds';
import { apiVersionOf, type ResourceType } from '../runtime/resource.ts';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { LABEL_MANAGED_BY, LABEL_VM, LABEL_VM_UID, MANAGED_BY, virtualMachineType } from '../vm/names.ts';
import { controllerReference } from '../runtime/owner-mapping.ts';

export const podDisruptionBudgetType: ResourceType = {
  group: 'policy',
  version: 'v1',
  plural: 'poddisruptionbudgets',
  kind: 'PodDisruptionBudget',
  namespaced: true,
};

/** Source and migration target: the most launcher pods one VM ever has. */
export const LAUNCHER_MIN_AVAILABLE = 2;

export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const BUDGET_COMPONENT = 'launcher-disruption-budget';
/** The label selector of every budget the operator manages. */
export const BUDGET_SELECTOR = `${LABEL_COMPONENT}=${BUDGET_COMPONENT},${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export function budgetName(vmName: string): string {
  return `launcher-${vmName}`;
}

/** The budget the VM should have, or undefined when it should have none. */
export function desiredBudget(vm: VirtualMachine): PodDisruptionBudget | undefined {
  const uid = vm.metadata.uid;
  if (uid === undefined || vm.spec.evictionStrategy !== 'LiveMigrate') return undefined;
  return {
    metadata: {
      name: budgetName(vm.metadata.name),
      namespace: vm.metadata.namespace,
      labels: { [LABEL_COMPONENT]: BUDGET_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_VM]: vm.metadata.name, [LABEL_VM_UID]: uid },
      ownerReferences: [controllerReference(virtualMachineType, vm)],
    },
    spec: {
      minAvailable: LAUNCHER_MIN_AVAILABLE,
      selector: { matchLabels: { [LABEL_VM_UID]: uid } },
      unhealthyPodEvictionPolicy: 'IfHealthyBudget',
    },
  };
}

export type BudgetAction =
  | { kind: 'none' }
  | { kind: 'create'; body: PodDisruptionBudget & { apiVersion: string; kind: string } }
  /** The spec drifted (edited by hand, or written by an older operator): patch it back. */
  | { kind: 'update'; spec: Record<string, unknown>; resourceVersion: string | undefined }
  | { kind: 'delete'; uid: string }
  /** A budget of that name that this VM does not own: left alone. */
  | { kind: 'foreign'; owner: string | undefined };

function sameSpec(a: PodDisruptionBudget['spec'], b: PodDisruptionBudget['spec']): boolean {
  return (
    a?.minAvailable === b?.minAvailable &&
    a?.maxUnavailable === b?.maxUnavailable &&
    a?.unhealthyPodEvictionPolicy === b?.unhealthyPodEvictionPolicy &&
    JSON.stringify(a?.selector?.matchLabels ?? {}) === JSON.stringify(b?.selector?.matchLabels ?? {})
  );
}

/** What to do about the VM's budget, given the one in the cache (if any). */
export function budgetAction(vm: VirtualMachine | undefined, existing: PodDisruptionBudget | undefined): BudgetAction {
  const owner = existing?.metadata.ownerReferences?.find((r) => r.controller === true);
  const ours = existing !== undefined && vm !== undefined && owner?.uid === vm.metadata.uid;
  if (existing !== undefined && !ours) {
    // A budget of a deleted VM with the same name goes with the garbage collector.
    return { kind: 'foreign', owner: owner === undefined ? undefined : `${owner.kind}/${owner.name}` };
  }
  const want = vm === undefined ? undefined : desiredBudget(vm);
  if (want === undefined) {
    return existing === undefined || existing.metadata.deletionTimestamp !== undefined ? { kind: 'none' } : { kind: 'delete', uid: existing.metadata.uid ?? '' };
  }
  if (existing === undefined) {
    return { kind: 'create', body: { apiVersion: apiVersionOf(podDisruptionBudgetType), kind: podDisruptionBudgetType.kind, ...want } };
  }
  if (existing.metadata.deletionTimestamp !== undefined || sameSpec(existing.spec, want.spec)) return { kind: 'none' };
  // A merge patch: maxUnavailable (exclusive with minAvailable) goes with null.
  return { kind: 'update', spec: { ...want.spec, maxUnavailable: null }, resourceVersion: existing.metadata.resourceVersion };
}

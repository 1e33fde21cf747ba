// The PodDisruptionBudget that keeps an eviction (`kubectl drain`) from killing a VM
// whose evictionStrategy is LiveMigrate, as pure functions of the namespace's VMs and
// the budgets that exist. The evacuation controller moves such a VM away by live
// migration and the migration deletes the source pod itself (DELETE, which no budget
// stops).
//
// One budget per namespace (ADR 0112), `keyvirt-launchers`, selecting the launcher pods
// labelled `keyvirt.io/eviction-strategy=LiveMigrate` (the VM controller keeps that label
// equal to the VM's spec), with an integer minAvailable above any number of pods: the
// disruption controller computes `disruptionsAllowed: 0` however many of them run, so
// every eviction of a running one is refused with 429 — a VM's source and migration
// target alike — as the per-VM `minAvailable: 2` budgets of ADR 0090 did. An integer
// minAvailable needs no scale subresource on the pods' owner (maxUnavailable and
// percentages do). Pending pods hold no guest and the eviction API lets them go
// regardless of any budget.
import type { VirtualMachine } from '@keyvirt/crds';
import { sameJson } from '../runtime/canonical-json.ts';
import { apiVersionOf, type ResourceType } from '../runtime/resource.ts';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { LABEL_EVICTION_STRATEGY, LABEL_MANAGED_BY, LABEL_VM_UID, LAUNCHER_COMPONENT, MANAGED_BY } from '../vm/names.ts';

export const podDisruptionBudgetType: ResourceType = {
  group: 'policy',
  version: 'v1',
  plural: 'poddisruptionbudgets',
  kind: 'PodDisruptionBudget',
  namespaced: true,
};

/** Above any count of launcher pods in a namespace (the largest value the field holds). */
export const LAUNCHER_MIN_AVAILABLE = 2_147_483_647;

export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const BUDGET_COMPONENT = 'launcher-disruption-budget';
/** The label selector of every budget the operator manages (the namespace's, and per-VM ones of ADR 0090). */
export const BUDGET_SELECTOR = `${LABEL_COMPONENT}=${BUDGET_COMPONENT},${LABEL_MANAGED_BY}=${MANAGED_BY}`;
/** The namespace's launcher budget. No VM name gives a per-VM budget this name (those start with `launcher-`). */
export const NAMESPACE_BUDGET_NAME = 'keyvirt-launchers';

/** Whether the namespace needs the budget: a VM in it has evictionStrategy LiveMigrate. */
export function namespaceNeedsBudget(vms: readonly VirtualMachine[]): boolean {
  return vms.some((vm) => vm.spec.evictionStrategy === 'LiveMigrate');
}

/** The namespace's launcher budget. */
export function desiredBudget(namespace: string): PodDisruptionBudget {
  return {
    metadata: {
      name: NAMESPACE_BUDGET_NAME,
      namespace,
      labels: { [LABEL_COMPONENT]: BUDGET_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY },
    },
    spec: {
      minAvailable: LAUNCHER_MIN_AVAILABLE,
      selector: { matchLabels: { [LABEL_COMPONENT]: LAUNCHER_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_EVICTION_STRATEGY]: 'LiveMigrate' } },
      unhealthyPodEvictionPolicy: 'IfHealthyBudget',
    },
  };
}

export type BudgetAction =
  | { kind: 'none' }
  | { kind: 'create'; body: PodDisruptionBudget & { apiVersion: string; kind: string } }
  /** The spec drifted (edited by hand): patch it back. */
  | { kind: 'update'; spec: Record<string, unknown>; resourceVersion: string | undefined };

/** The budget's spec as the operator writes it; the selector's labels in any key order (the API server's map order is not ours). */
function sameSpec(a: PodDisruptionBudget['spec'], b: PodDisruptionBudget['spec']): boolean {
  return (
    a?.minAvailable === b?.minAvailable &&
    a?.maxUnavailable === b?.maxUnavailable &&
    a?.unhealthyPodEvictionPolicy === b?.unhealthyPodEvictionPolicy &&
    sameJson(a?.selector?.matchLabels ?? {}, b?.selector?.matchLabels ?? {})
  );
}

/**
 * What to do about the namespace's budget, given whether this operator's VMs there need
 * one and the one in the cache (if any). It is never deleted: operators sharing a
 * cluster by VM selector each see only their own VMs, and one without a LiveMigrate VM
 * in the namespace cannot tell that another's need it. A budget whose namespace has no
 * LiveMigrate launcher pod selects nothing; it goes with the namespace.
 */
export function budgetAction(namespace: string, needed: boolean, existing: PodDisruptionBudget | undefined): BudgetAction {
  if (!needed) return { kind: 'none' };
  const want = desiredBudget(namespace);
  if (existing === undefined) {
    return { kind: 'create', body: { apiVersion: apiVersionOf(podDisruptionBudgetType), kind: podDisruptionBudgetType.kind, ...want } };
  }
  if (existing.metadata.deletionTimestamp !== undefined || sameSpec(existing.spec, want.spec)) return { kind: 'none' };
  // A merge patch: maxUnavailable (exclusive with minAvailable) goes with null; the selector is replaced whole.
  return { kind: 'update', spec: { ...want.spec, maxUnavailable: null, selector: { matchLabels: want.spec?.selector?.matchLabels, matchExpressions: null } }, resourceVersion: existing.metadata.resourceVersion };
}

/**
 * The per-VM budgets an earlier operator made (ADR 0090) for this operator's VMs
 * (`vmUids`) that may go: once the namespace's budget exists, a per-VM budget is removed
 * when every live launcher pod it selects carries the eviction-strategy label (until
 * then it is what protects them; a pod selected by both is refused eviction with a 500,
 * never evicted).
 */
export function removableVmBudgets(
  budgets: readonly PodDisruptionBudget[],
  vmUids: ReadonlySet<string>,
  namespaceBudget: PodDisruptionBudget | undefined,
  pods: readonly { metadata: { labels?: Record<string, string> | undefined }; status?: { phase?: string | undefined } | undefined }[],
): PodDisruptionBudget[] {
  if (namespaceBudget === undefined || namespaceBudget.metadata.deletionTimestamp !== undefined) return [];
  return budgets.filter((b) => {
    if (b.metadata.name === NAMESPACE_BUDGET_NAME || b.metadata.deletionTimestamp !== undefined) return false;
    const uid = b.spec?.selector?.matchLabels?.[LABEL_VM_UID];
    if (uid === undefined || !vmUids.has(uid)) return false;
    return pods.every((p) => p.metadata.labels?.[LABEL_VM_UID] !== uid || p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' || p.metadata.labels[LABEL_EVICTION_STRATEGY] !== undefined);
  });
}

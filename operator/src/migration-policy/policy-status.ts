// A MigrationPolicy's status as a pure function of the cached VMs, namespaces and
// policies: how many VMs it applies to (those for which it wins the precedence of ADR
// 0085, not merely those it selects) and a Ready condition that says so, naming the
// policy that wins over it where it loses.
import type { Condition, MigrationPolicy, MigrationPolicyStatus, VirtualMachine } from '@keyvirt/crds';
import { policySelectsVm, selectMigrationPolicy } from './policy-resolution.ts';

export interface PolicyStatusInput {
  policy: MigrationPolicy;
  /** Every VM the operator manages. */
  vms: readonly VirtualMachine[];
  /** The labels of a namespace ({} when it is not cached). */
  namespaceLabels(namespace: string): Readonly<Record<string, string>>;
  /** Every MigrationPolicy, this one included. */
  policies: readonly MigrationPolicy[];
  previous: MigrationPolicyStatus | undefined;
  /** RFC 3339, for a condition whose status changes. */
  now: string;
}

function plural(n: number): string {
  return n === 1 ? '1 VM' : `${n} VMs`;
}

/** The status the operator writes for `policy`. */
export function migrationPolicyStatus(input: PolicyStatusInput): MigrationPolicyStatus {
  const { policy } = input;
  const name = policy.metadata.name;
  let applied = 0;
  const shadowedBy = new Map<string, number>();
  for (const vm of input.vms) {
    const nsLabels = input.namespaceLabels(vm.metadata.namespace ?? 'default');
    if (!policySelectsVm(policy, vm.metadata.labels ?? {}, nsLabels)) continue;
    const winner = selectMigrationPolicy(vm, nsLabels, input.policies)?.metadata.name;
    if (winner === name) applied += 1;
    else if (winner !== undefined) shadowedBy.set(winner, (shadowedBy.get(winner) ?? 0) + 1);
  }
  const shadowed = [...shadowedBy.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const others = shadowed.map(([winner, n]) => `${plural(n)} it selects follow MigrationPolicy ${winner}, which matches more labels or comes first by name`);
  const message = [applied === 0 ? 'applies to no VM' : `applies to ${plural(applied)}`, ...others].join('; ');
  const next: Omit<Condition, 'lastTransitionTime'> = {
    type: 'Ready',
    status: 'True',
    reason: applied > 0 ? 'Applied' : shadowed.length > 0 ? 'Overridden' : 'NoVirtualMachines',
    message,
  };
  const old = input.previous?.conditions?.find((c) => c.type === 'Ready');
  const lastTransitionTime = old !== undefined && old.status === next.status ? old.lastTransitionTime : input.now;
  const generation = policy.metadata.generation;
  return {
    conditions: [{ ...next, lastTransitionTime, ...(generation !== undefined ? { observedGeneration: generation } : {}) }],
    matchedVirtualMachines: applied,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
}

// Which MigrationPolicy applies to a VM, and the migration settings that result:
// cluster defaults ← the selecting policy ← the migration's own overrides.
// Precedence among several matching policies (docs/adr/0085-migration-policy-precedence.md):
// more label requirements matched in total wins, then more on the VM selector, then the
// policy name first in code-point order — so every operator replica picks the same one.
import type { MigrationPolicy, MigrationTuning, VirtualMachine } from '@keyvirt/crds';
import { migrationPolicyFromTuning, resolveMigrationTuning, type MigrationPolicy as LauncherMigrationPolicy, type MigrationTuningInput } from '@keyvirt/launcher/api';
import { labelSelectorMatches, selectorRequirementCount } from './label-selector.ts';

/** How many migrations may run at once (KubeVirt's defaults unless a policy says otherwise). */
export interface MigrationLimits {
  parallelMigrationsPerCluster: number;
  parallelOutboundMigrationsPerNode: number;
}

/** KubeVirt's cluster defaults (pkg/virt-config): 5 migrations per cluster, 2 leaving one node. */
export const DEFAULT_MIGRATION_LIMITS: Readonly<MigrationLimits> = Object.freeze({
  parallelMigrationsPerCluster: 5,
  parallelOutboundMigrationsPerNode: 2,
});

export interface PolicyResolutionInput {
  vm: VirtualMachine;
  /** The labels of the VM's namespace ({} when the namespace is not known). */
  namespaceLabels: Record<string, string>;
  policies: readonly MigrationPolicy[];
  /** The VirtualMachineMigration's spec.policyOverrides. */
  overrides?: MigrationTuning | undefined;
}

export interface ResolvedMigrationPolicy {
  /** The MigrationPolicy that selected the VM; absent when none did (cluster defaults). */
  policyName?: string;
  /** Every field resolved: what the source launcher receives as `policy`. */
  policy: LauncherMigrationPolicy;
  limits: MigrationLimits;
}

/** Both selectors of the policy match the VM (an absent selector matches every VM or namespace). */
export function policySelectsVm(policy: MigrationPolicy, vmLabels: Readonly<Record<string, string>>, namespaceLabels: Readonly<Record<string, string>>): boolean {
  const { virtualMachineSelector, namespaceSelector } = policy.spec.selectors;
  return labelSelectorMatches(virtualMachineSelector, vmLabels) && labelSelectorMatches(namespaceSelector, namespaceLabels);
}

interface Score {
  total: number;
  vm: number;
}

function scoreOf(policy: MigrationPolicy): Score {
  const vm = selectorRequirementCount(policy.spec.selectors.virtualMachineSelector);
  return { total: vm + selectorRequirementCount(policy.spec.selectors.namespaceSelector), vm };
}

/** Orders matching policies best first: more requirements in total, then more on the VM selector, then by name. */
export function comparePolicyPrecedence(a: MigrationPolicy, b: MigrationPolicy): number {
  const sa = scoreOf(a);
  const sb = scoreOf(b);
  if (sa.total !== sb.total) return sb.total - sa.total;
  if (sa.vm !== sb.vm) return sb.vm - sa.vm;
  const na = a.metadata.name ?? '';
  const nb = b.metadata.name ?? '';
  return na < nb ? -1 : na > nb ? 1 : 0;
}

/** The policy that applies to a VM, if any selects it (see the precedence rule above). */
export function selectMigrationPolicy(
  vm: VirtualMachine,
  namespaceLabels: Readonly<Record<string, string>>,
  policies: readonly MigrationPolicy[],
): MigrationPolicy | undefined {
  const vmLabels = vm.metadata.labels ?? {};
  return policies.filter((p) => p.metadata.deletionTimestamp === undefined && policySelectsVm(p, vmLabels, namespaceLabels)).sort(comparePolicyPrecedence)[0];
}

function tuningOf(policy: MigrationPolicy | undefined): MigrationTuningInput {
  if (policy === undefined) return {};
  const { bandwidthPerMigration, completionTimeoutPerGiB, progressTimeoutSeconds, allowAutoConverge, allowPostCopy, downtime } = policy.spec;
  return { bandwidthPerMigration, completionTimeoutPerGiB, progressTimeoutSeconds, allowAutoConverge, allowPostCopy, downtime };
}

/**
 * The migration settings for a VM: cluster defaults (KubeVirt's timeouts, unlimited
 * bandwidth, no auto-converge or post-copy, oVirt's 100 → 500 ms downtime steps) ←
 * the policy that selects the VM ← the migration's overrides, field by field (the
 * downtime schedule as a whole). Throws a ZodError only for a tuning the CRD schema
 * would have refused.
 */
export function resolveMigrationPolicy(input: PolicyResolutionInput): ResolvedMigrationPolicy {
  const selected = selectMigrationPolicy(input.vm, input.namespaceLabels, input.policies);
  const policy = migrationPolicyFromTuning(resolveMigrationTuning(tuningOf(selected), input.overrides));
  const limits: MigrationLimits = {
    parallelMigrationsPerCluster: selected?.spec.parallelMigrationsPerCluster ?? DEFAULT_MIGRATION_LIMITS.parallelMigrationsPerCluster,
    parallelOutboundMigrationsPerNode: selected?.spec.parallelOutboundMigrationsPerNode ?? DEFAULT_MIGRATION_LIMITS.parallelOutboundMigrationsPerNode,
  };
  const name = selected?.metadata.name;
  return name === undefined ? { policy, limits } : { policyName: name, policy, limits };
}

// Where a migration's launcher policy and the cluster's parallel limits come from: the
// MigrationPolicy resolution (cluster defaults ← the policy selecting the VM ← the
// migration's own overrides) and the parallel-limit admission. A seam, so that the
// controller's tests can pin limits without MigrationPolicy objects.
import { admitMigration } from '../migration-policy/migration-admission.ts';
import { resolveMigrationPolicy, type PolicyResolutionInput, type ResolvedMigrationPolicy, type MigrationLimits } from '../migration-policy/policy-resolution.ts';
import type { Admission } from '../migration-policy/migration-admission.ts';

export type { Admission, MigrationLimits, ResolvedMigrationPolicy };

export interface MigrationPolicySource {
  resolve(input: PolicyResolutionInput): ResolvedMigrationPolicy;
  admit(candidate: { sourceNode: string }, running: readonly { sourceNode: string }[], limits: MigrationLimits): Admission;
}

export const clusterPolicySource: MigrationPolicySource = {
  resolve: resolveMigrationPolicy,
  admit: admitMigration,
};

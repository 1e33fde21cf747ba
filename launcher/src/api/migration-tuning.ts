// From the CRDs' migration tuning to the policy a source launcher applies. The operator
// resolves a VM's tuning (its VirtualMachineMigration's policyOverrides over the
// matching MigrationPolicy) and sends the result as `policy` in POST /v1/migrations;
// the target launcher needs only `postCopy` from it.
import type { z } from 'zod';
import { parseQuantity, type MigrationTuning } from '@keyvirt/crds';
import { MigrationPolicySchema, type MigrationPolicy, type MigrationPolicyInput } from './migration.ts';

/** A MigrationTuning as written (defaults not yet applied) or as parsed. */
export type MigrationTuningInput = z.input<typeof MigrationTuning>;

/** The tuning that applies: each field of the overrides wins over the policy's (the downtime schedule as a whole). */
export function resolveMigrationTuning(policy: MigrationTuningInput | undefined, overrides: MigrationTuningInput | undefined): MigrationTuningInput {
  const resolved: MigrationTuningInput = { ...policy };
  for (const [key, value] of Object.entries(overrides ?? {}) as [keyof MigrationTuningInput, unknown][]) {
    if (value !== undefined) Object.assign(resolved, { [key]: value });
  }
  return resolved;
}

/**
 * The launcher policy for a resolved tuning. Absent fields take the launcher's
 * defaults, which are the CRDs' documented defaults. Throws a ZodError when the
 * tuning breaks the CRD's constraints (it cannot, once the API server accepted it).
 */
export function migrationPolicyFromTuning(tuning: MigrationTuningInput): MigrationPolicy {
  const input: MigrationPolicyInput = {};
  if (tuning.bandwidthPerMigration !== undefined) {
    const bytes = parseQuantity(tuning.bandwidthPerMigration);
    input.bandwidthBytesPerSecond = bytes === undefined ? Number.NaN : Math.round(bytes);
  }
  if (tuning.downtime !== undefined) {
    input.downtimeScheduleMs = [...tuning.downtime.stepsMs];
    if (tuning.downtime.stallIterations !== undefined) input.stalledIterationsPerStep = tuning.downtime.stallIterations;
  }
  if (tuning.allowAutoConverge !== undefined) input.autoConverge = tuning.allowAutoConverge;
  if (tuning.allowPostCopy !== undefined) input.postCopy = tuning.allowPostCopy;
  if (tuning.completionTimeoutPerGiB !== undefined) input.completionTimeoutPerGiBSeconds = tuning.completionTimeoutPerGiB;
  if (tuning.progressTimeoutSeconds !== undefined) input.progressTimeoutSeconds = tuning.progressTimeoutSeconds;
  return MigrationPolicySchema.parse(input);
}

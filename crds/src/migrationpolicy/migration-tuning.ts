// The knobs of one live migration, shared by MigrationPolicy (cluster defaults per
// selector) and VirtualMachineMigration (per-migration overrides).
import { z } from 'zod';
import { byteSize, int32, int64 } from '../fields.ts';
import { unless, withRules } from '../validation-rule.ts';

export const BANDWIDTH_MAX = '100Gi';
export const MAX_DOWNTIME_MS = 60000;

export const DowntimeSchedule = withRules(
  z
    .object({
      stepsMs: z
        .array(int32(1, MAX_DOWNTIME_MS))
        .min(1, { error: 'downtime.stepsMs needs at least one step' })
        .max(16, { error: 'downtime.stepsMs may have at most 16 steps' })
        .describe(`Maximum guest downtime per step in milliseconds (1-${MAX_DOWNTIME_MS}), strictly increasing; the migration starts at the first step and moves to the next after stalled iterations (oVirt: 100, 150, 200, 300, 400, 500).`),
      stallIterations: int32(1, 100).default(2).describe('Iterations without progress before moving to the next step (1-100, default 2).'),
    })
    .describe('The downtime schedule: how much pause the guest may see, raised step by step when the migration does not converge.'),
  [
    {
      cel: 'self.stepsMs.isSorted() && self.stepsMs.all(x, self.stepsMs.exists_one(y, y == x))',
      message: 'downtime.stepsMs must be strictly increasing',
      fieldPath: '.stepsMs',
      violations: (d) => unless(d.stepsMs.every((v, i) => i === 0 || v > (d.stepsMs[i - 1] ?? 0)), ['stepsMs']),
    },
  ],
);
export type DowntimeSchedule = z.infer<typeof DowntimeSchedule>;

export const migrationTuningFields = {
  bandwidthPerMigration: byteSize('bandwidthPerMigration', '0', BANDWIDTH_MAX)
    .optional()
    .describe(`Bytes per second one migration may use, e.g. 64Mi; 0 means unlimited (at most ${BANDWIDTH_MAX}).`),
  completionTimeoutPerGiB: int64(1, 86400).optional().describe('Seconds per GiB of guest memory after which a migration that has not finished is cancelled (1-86400; KubeVirt default 150).'),
  progressTimeoutSeconds: int64(1, 86400).optional().describe('Seconds without progress after which the migration is cancelled (1-86400; default 150).'),
  allowAutoConverge: z.boolean().optional().describe('Throttle the guest vCPUs when memory is dirtied faster than it is copied.'),
  allowPostCopy: z.boolean().optional().describe('Switch to post-copy when pre-copy does not converge: the guest runs on the target at once, but a network failure then loses it.'),
  downtime: DowntimeSchedule.optional(),
};

/** The per-migration tuning knobs; absent fields take the policy's or the cluster default. */
export const MigrationTuning = z.object(migrationTuningFields).describe('Migration settings; absent fields keep the policy value or the cluster default.');
export type MigrationTuning = z.infer<typeof MigrationTuning>;

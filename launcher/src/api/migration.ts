// The launcher's live-migration API: what the operator sends to a source launcher
// (POST /v1/migrations), what a target launcher reports about the incoming side,
// and the progress/result events both stream back. Times from QEMU events are
// epoch microseconds taken from the QMP event timestamps.
import { z } from 'zod';
import { BANDWIDTH_MAX, DowntimeSchedule, MAX_DOWNTIME_MS, migrationTuningFields, parseQuantity } from '@keyvirt/crds';
import { MigrationTlsClientCredentialsSchema, MigrationTlsServerCredentialsSchema } from './migration-tls.ts';

export * from './migration-tls.ts';

/** oVirt's "minimal downtime" schedule, the default when a policy names none. */
export const defaultDowntimeScheduleMs: readonly number[] = [100, 150, 200, 300, 400, 500];
/** KubeVirt's default completion timeout per GiB of guest memory, in seconds. */
export const DEFAULT_COMPLETION_TIMEOUT_PER_GIB_SECONDS = 150;
/** KubeVirt's default progress timeout, in seconds. */
export const DEFAULT_PROGRESS_TIMEOUT_SECONDS = 150;
/** The largest bandwidth a MigrationPolicy may set, in bytes per second. */
export const MAX_BANDWIDTH_BYTES_PER_SECOND: number = parseQuantity(BANDWIDTH_MAX) ?? 0;

/**
 * The migration policy the source launcher applies. Every field accepts exactly what
 * the CRDs' MigrationTuning expresses (the constraints come from @keyvirt/crds), and
 * absent fields take the same defaults the CRDs document.
 */
export const MigrationPolicySchema = z
  .object({
    bandwidthBytesPerSecond: z
      .int()
      .min(0)
      .max(MAX_BANDWIDTH_BYTES_PER_SECOND)
      .default(0)
      .describe('Maximum migration bandwidth in bytes per second; 0 means unlimited'),
    downtimeScheduleMs: DowntimeSchedule.shape.stepsMs
      .default([...defaultDowntimeScheduleMs])
      .describe(`Maximum tolerated downtime per step in milliseconds (1-${MAX_DOWNTIME_MS}), strictly increasing, raised one step after stalled iterations`),
    stalledIterationsPerStep: DowntimeSchedule.shape.stallIterations.describe(
      'Stalled iterations (remaining data not below its lowest) before the next downtime step',
    ),
    autoConverge: z.boolean().default(false).describe('Throttle the guest vCPUs when the migration does not converge'),
    postCopy: z
      .boolean()
      .default(false)
      .describe('Switch to post-copy when the downtime schedule is exhausted or the completion timeout passes'),
    completionTimeoutPerGiBSeconds: migrationTuningFields.completionTimeoutPerGiB
      .unwrap()
      .default(DEFAULT_COMPLETION_TIMEOUT_PER_GIB_SECONDS)
      .describe('Allowed migration time per GiB of guest memory before post-copy (if allowed) or abort'),
    progressTimeoutSeconds: migrationTuningFields.progressTimeoutSeconds
      .unwrap()
      .default(DEFAULT_PROGRESS_TIMEOUT_SECONDS)
      .describe('Abort when the remaining data has not reached a new low for this long'),
  })
  .strict()
  .superRefine((policy, ctx) => {
    // The CRD's own downtime-schedule rules (strictly increasing steps), reported on the
    // launcher's field names; the field constraints were already checked by the fields.
    const crd = DowntimeSchedule.safeParse({ stepsMs: policy.downtimeScheduleMs, stallIterations: policy.stalledIterationsPerStep });
    for (const issue of crd.success ? [] : crd.error.issues.filter((i) => i.code === 'custom')) {
      const [field, ...rest] = issue.path;
      ctx.addIssue({ code: 'custom', message: issue.message, path: [field === 'stallIterations' ? 'stalledIterationsPerStep' : 'downtimeScheduleMs', ...rest] });
    }
  });
export type MigrationPolicy = z.output<typeof MigrationPolicySchema>;
export type MigrationPolicyInput = z.input<typeof MigrationPolicySchema>;

const host = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9.:-]+$/, 'must be an IPv4/IPv6 address or a host name');

export const MigrationTargetSchema = z
  .object({
    host: host.describe('Address the target launcher listens on for the migration stream'),
    port: z.number().int().min(1).max(65_535),
    launcherUrl: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe("The target launcher's API base URL; lets the source report the guest-visible pause"),
  })
  .strict();
export type MigrationTarget = z.infer<typeof MigrationTargetSchema>;

export const StartMigrationRequestSchema = z
  .object({
    migrationId: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9._-]+$/)
      .optional()
      .describe('Caller-chosen id (e.g. the VirtualMachineMigration uid); generated when absent'),
    target: MigrationTargetSchema,
    policy: MigrationPolicySchema.default(MigrationPolicySchema.parse({})),
    tls: MigrationTlsClientCredentialsSchema.describe(
      'The credentials the operator minted for this migration: the source migrates only over TLS, to a target whose certificate chains to tls.caCert',
    ),
  })
  .strict();
export type StartMigrationRequest = z.output<typeof StartMigrationRequestSchema>;
export type StartMigrationRequestInput = z.input<typeof StartMigrationRequestSchema>;

export const MigrationPhaseSchema = z.enum(['Running', 'Succeeded', 'Failed', 'Cancelled']);
export type MigrationPhase = z.infer<typeof MigrationPhaseSchema>;

export const MigrationFailureReasonSchema = z.enum([
  'Cancelled',
  'ProgressTimeout',
  'CompletionTimeout',
  'QemuFailed',
  'TargetUnreachable',
  'SourceStopped',
  /** Failed after the post-copy switch-over: the source never runs the guest again (ADR 0054). */
  'PostCopyFailed',
]);
export type MigrationFailureReason = z.infer<typeof MigrationFailureReasonSchema>;

const bytes = z.number().int().min(0);
const epochMicros = z.number().int().min(0);

export const MigrationProgressSchema = z.object({
  migrationId: z.string(),
  phase: MigrationPhaseSchema,
  qemuStatus: z.string().describe('QEMU migration status (setup, active, postcopy-active, device, completed …)'),
  elapsedMs: z.number().int().min(0),
  iteration: z.number().int().min(0).describe('Dirty-memory sync count: 1 is the first full pass'),
  transferredBytes: bytes,
  remainingBytes: bytes,
  totalBytes: bytes,
  dirtyRateBytesPerSecond: bytes,
  throughputBytesPerSecond: bytes,
  downtimeLimitMs: z.number().int().min(0),
  cpuThrottlePercent: z.number().int().min(0).max(100),
  postCopy: z.boolean().describe('True once switched to post-copy'),
});
export type MigrationProgress = z.infer<typeof MigrationProgressSchema>;

export const MigrationResultSchema = z.object({
  migrationId: z.string(),
  phase: MigrationPhaseSchema.exclude(['Running']),
  reason: MigrationFailureReasonSchema.optional(),
  message: z.string().optional(),
  totalTimeMs: z.number().int().min(0).nullable(),
  downtimeMs: z.number().int().min(0).nullable().describe("QEMU's measured downtime"),
  setupTimeMs: z.number().int().min(0).nullable(),
  guestPauseMs: z
    .number()
    .min(0)
    .nullable()
    .describe('Source STOP → target RESUME; null when the target resume time is unknown'),
  sourceStoppedAtMicros: epochMicros.nullable(),
  targetResumedAtMicros: epochMicros.nullable(),
  transferredBytes: bytes,
  iterations: z.number().int().min(0),
  postCopy: z.boolean(),
  sourceRunning: z.boolean().describe('Whether the source guest runs after the attempt (false on success)'),
});
export type MigrationResult = z.infer<typeof MigrationResultSchema>;

/** One line of the migration event stream (newline-delimited JSON). */
export const MigrationEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('progress'), progress: MigrationProgressSchema }),
  z.object({ type: z.literal('result'), result: MigrationResultSchema }),
]);
export type MigrationEvent = z.infer<typeof MigrationEventSchema>;

/** GET /v1/migrations/current on a source launcher. */
export const SourceMigrationStatusSchema = z.object({
  migrationId: z.string(),
  target: MigrationTargetSchema,
  policy: MigrationPolicySchema,
  progress: MigrationProgressSchema.nullable(),
  result: MigrationResultSchema.nullable(),
});
export type SourceMigrationStatus = z.infer<typeof SourceMigrationStatusSchema>;

export const IncomingMigrationPhaseSchema = z.enum(['Listening', 'Receiving', 'Succeeded', 'Failed']);
export type IncomingMigrationPhase = z.infer<typeof IncomingMigrationPhaseSchema>;

/** GET /v1/migrations/incoming on a target launcher. */
export const IncomingMigrationStatusSchema = z.object({
  phase: IncomingMigrationPhaseSchema,
  host: z.string().describe('Address the migration stream listens on'),
  port: z.number().int().min(1).max(65_535),
  postCopy: z.boolean(),
  resumedAtMicros: epochMicros.nullable().describe('Target RESUME event time, epoch microseconds'),
  refusedConnections: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('Connections to the migration port that were dropped before reaching QEMU (failed TLS handshake, no data, not the first)'),
  message: z.string().optional(),
});
export type IncomingMigrationStatus = z.infer<typeof IncomingMigrationStatusSchema>;

/** The guest-visible pause: source STOP → target RESUME, in milliseconds. */
export function guestPauseMs(sourceStoppedAtMicros: number | null, targetResumedAtMicros: number | null): number | null {
  if (sourceStoppedAtMicros === null || targetResumedAtMicros === null) return null;
  const pause = (targetResumedAtMicros - sourceStoppedAtMicros) / 1000;
  return pause >= 0 ? Math.round(pause * 1000) / 1000 : null;
}

/** POST /v1/migrations/incoming on a target launcher (started in migration-target mode). */
export const PrepareIncomingRequestSchema = z
  .object({
    address: host
      .optional()
      .describe("Address to listen on; defaults to the launcher's own (non-wildcard) listen address or its pod IP"),
    port: z.number().int().min(0).max(65_535).default(0).describe('0 picks a free port'),
    postCopy: z.boolean().default(false).describe("Must equal the source policy's postCopy"),
    tls: MigrationTlsServerCredentialsSchema.describe(
      'The credentials the operator minted for this migration: the target accepts only a TLS client whose certificate chains to tls.caCert',
    ),
  })
  .strict();
export type PrepareIncomingRequest = z.output<typeof PrepareIncomingRequestSchema>;
export type PrepareIncomingRequestInput = z.input<typeof PrepareIncomingRequestSchema>;

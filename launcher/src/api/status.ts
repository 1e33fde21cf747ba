// The launcher's HTTP API v1: info, status, lifecycle actions, the event stream and
// error bodies. Plain zod schemas, shared by the launcher and the operator's client.
import { z } from 'zod';

export const LAUNCHER_API_VERSIONS = ['v1'] as const;

export const LauncherPhaseSchema = z.enum([
  'Starting',
  'WaitingForMigration',
  'Running',
  'Paused',
  'Migrating',
  'Stopping',
  'Stopped',
  'Failed',
]);
export type LauncherPhase = z.infer<typeof LauncherPhaseSchema>;

export const AcceleratorSchema = z.enum(['kvm', 'tcg']);

export const InfoSchema = z.object({
  apiVersions: z.array(z.string()).min(1),
  launcherVersion: z.string(),
  qemuVersion: z.string().optional(),
  accelerator: AcceleratorSchema,
  acceleratorReason: z.string(),
  mode: z.enum(['run', 'migration-target']),
  vm: z.object({ name: z.string(), namespace: z.string(), uid: z.string() }),
});
export type Info = z.infer<typeof InfoSchema>;

const timestamp = z.iso.datetime();

export const GuestInterfaceSchema = z.object({
  name: z.string(),
  macAddress: z.string().optional(),
  ipAddresses: z.array(z.object({ family: z.enum(['ipv4', 'ipv6']), address: z.string(), prefix: z.number() })),
});

export const GuestOsSchema = z.object({
  id: z.string().optional(),
  name: z.string().optional(),
  prettyName: z.string().optional(),
  version: z.string().optional(),
  versionId: z.string().optional(),
  kernelRelease: z.string().optional(),
  machine: z.string().optional(),
});
export type GuestOs = z.infer<typeof GuestOsSchema>;

export const QemuExitSchema = z.object({
  code: z.number().int().nullable(),
  signal: z.string().nullable(),
  at: timestamp,
});

export const LeaseStateSchema = z.enum(['Acquiring', 'WaitingForExpiry', 'Held', 'Lost', 'Released']);
export type LeaseState = z.infer<typeof LeaseStateSchema>;

/** The storage lease of a highly available VM as this launcher sees it (ADR 0063). */
export const LeaseStatusSchema = z.object({
  state: LeaseStateSchema,
  /** This launcher's own identity in the lease (a migration source hands the lease to its target's). */
  holderId: z.string().optional(),
  /** The holder last read from the lease (this launcher once Held). */
  holder: z.string().optional(),
  generation: z.int().min(0).optional(),
  /** WaitingForExpiry: how long the current holder has not renewed, on this launcher's monotonic clock. */
  holderSilentMs: z.int().min(0).optional(),
  /** The lease was taken over from a holder that never released it (its disks were fenced). */
  takeover: z.boolean().optional(),
  /** Lost: LeaseLost (another holder) or LeaseExpired (no renewal within the fence timeout). */
  reason: z.string().optional(),
});
export type LeaseStatus = z.infer<typeof LeaseStatusSchema>;

export const StatusSchema = z.object({
  phase: LauncherPhaseSchema,
  /** Machine-readable cause of the current phase, e.g. GuestShutdown, QemuKilled, PausedByUser. */
  reason: z.string().optional(),
  message: z.string().optional(),
  accelerator: AcceleratorSchema,
  qemu: z.object({
    pid: z.number().int().optional(),
    runState: z.string().optional().describe('QEMU run state (running, paused, inmigrate, shutdown …)'),
    exit: QemuExitSchema.optional(),
  }),
  guestAgent: z.object({
    connected: z.boolean(),
    version: z.string().optional(),
    since: timestamp.optional(),
    lastSeen: timestamp.optional(),
  }),
  guest: z.object({
    os: GuestOsSchema.optional(),
    hostName: z.string().optional(),
    interfaces: z.array(GuestInterfaceSchema),
  }),
  disks: z.array(z.object({ name: z.string(), path: z.string(), cache: z.enum(['none', 'writeback']) })),
  /** Absent for a VM that is not highly available. */
  lease: LeaseStatusSchema.optional(),
  timestamps: z.object({
    launcherStartedAt: timestamp,
    qemuStartedAt: timestamp.optional(),
    runningSince: timestamp.optional(),
    phaseTransitionAt: timestamp,
  }),
});
export type Status = z.infer<typeof StatusSchema>;

export const LIFECYCLE_ACTIONS = ['shutdown', 'stop', 'pause', 'resume', 'reset', 'reboot'] as const;
export const LifecycleActionSchema = z.enum(LIFECYCLE_ACTIONS);
export type LifecycleAction = z.infer<typeof LifecycleActionSchema>;

const emptyBody = z.strictObject({});

/** Request bodies per action; unknown fields are rejected. */
export const ActionBodySchemas = {
  /** Graceful: ACPI power button, then the guest agent, then power off after the grace period. */
  shutdown: z.strictObject({ gracePeriodSeconds: z.int().min(0).max(3600).optional() }),
  /** Power off now. */
  stop: emptyBody,
  pause: emptyBody,
  resume: emptyBody,
  /** Hardware reset (like pressing the reset button). */
  reset: emptyBody,
  /** Ask the guest to reboot through the guest agent, falling back to a hardware reset. */
  reboot: emptyBody,
} as const satisfies Record<LifecycleAction, z.ZodType>;
export type ActionBody<A extends LifecycleAction> = z.input<(typeof ActionBodySchemas)[A]>;

export const ActionResponseSchema = z.object({ accepted: z.literal(true), action: LifecycleActionSchema, status: StatusSchema });
export type ActionResponse = z.infer<typeof ActionResponseSchema>;

export const LauncherEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('status'), seq: z.int().min(0), time: timestamp, status: StatusSchema }),
  z.object({
    type: z.literal('qemu'),
    seq: z.int().min(0),
    time: timestamp,
    event: z.string(),
    data: z.record(z.string(), z.unknown()).optional(),
  }),
]);
export type LauncherEvent = z.infer<typeof LauncherEventSchema>;

export const ERROR_CODES = ['BadRequest', 'Unauthorized', 'NotFound', 'MethodNotAllowed', 'Conflict', 'PayloadTooLarge', 'Internal', 'Unavailable'] as const;

export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.enum(ERROR_CODES),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

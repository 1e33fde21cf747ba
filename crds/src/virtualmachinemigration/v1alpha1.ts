// VirtualMachineMigration keyvirt.io/v1alpha1: one live migration of a VM to a new
// launcher pod. Deleting it cancels the migration; the source keeps running.
import { z } from 'zod';
import { API_VERSION } from '../api-group.ts';
import { conditions, dnsLabel, int32, int64, ObjectMeta, Timestamp } from '../fields.ts';
import { MigrationTuning } from '../migrationpolicy/migration-tuning.ts';
import { MIGRATION_MODES } from '../virtualmachine/v1alpha1.ts';
import { withRules } from '../validation-rule.ts';

export const MIGRATION_PHASES = ['Pending', 'Scheduling', 'PreparingTarget', 'TargetReady', 'Running', 'Succeeded', 'Failed', 'Cancelled'] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];
/** Phases after which nothing changes any more. */
export const MIGRATION_FINAL_PHASES: readonly MigrationPhase[] = ['Succeeded', 'Failed', 'Cancelled'];

export const VirtualMachineMigrationSpec = withRules(
  z
    .object({
      vmName: dnsLabel('vmName').describe('The VirtualMachine (same namespace) to migrate.'),
      targetNodeSelector: z.record(z.string(), z.string()).optional().describe('Labels the target node must carry, in addition to the VM\'s own placement rules.'),
      policyOverrides: MigrationTuning.optional(),
    })
    .describe('The desired migration. It cannot be changed; delete the object to cancel the migration.'),
  [{ cel: 'self == oldSelf', message: 'a migration cannot be changed; delete it to cancel it', transition: true, violations: () => [] }],
);
export type VirtualMachineMigrationSpec = z.infer<typeof VirtualMachineMigrationSpec>;
export type VirtualMachineMigrationSpecInput = z.input<typeof VirtualMachineMigrationSpec>;

const bytes = (description: string): z.ZodOptional<z.ZodNumber> => int64(0).optional().describe(description);

export const MigrationProgress = z
  .object({
    iteration: int64(0).optional().describe('The memory copy pass (1 for the first full copy).'),
    transferredBytes: bytes('Bytes copied so far.'),
    remainingBytes: bytes('Bytes still to copy.'),
    totalBytes: bytes('The guest memory size in bytes.'),
    percent: int32(0, 100).optional().describe('Share of the guest memory copied so far (0-100): (total - remaining) / total.'),
    dirtyRateBytesPerSecond: bytes('How fast the guest dirties memory.'),
    bandwidthBytesPerSecond: bytes('The copy rate.'),
    downtimeLimitMs: int32(0, 2147483647).optional().describe('The downtime step in force.'),
    mode: z.enum(MIGRATION_MODES).optional().describe('PreCopy, or PostCopy once the guest runs on the target while memory is still pulled.'),
    updateTime: Timestamp.optional().describe('When the operator last read this progress from the source launcher.'),
  })
  .describe('Progress of the memory copy, as QEMU reports it.');
export type MigrationProgress = z.infer<typeof MigrationProgress>;

export const VirtualMachineMigrationStatus = z
  .object({
    phase: z.enum(MIGRATION_PHASES).optional().describe('Pending, Scheduling, PreparingTarget, TargetReady, Running, Succeeded, Failed or Cancelled.'),
    phaseTransitionTime: Timestamp.optional().describe('When the migration entered its current phase.'),
    conditions: conditions(),
    sourceNode: z.string().optional().describe('The node the VM migrates from.'),
    targetNode: z.string().optional().describe('The node the VM migrates to.'),
    sourcePod: z.string().optional().describe('The source launcher pod.'),
    targetPod: z.string().optional().describe('The target launcher pod.'),
    mode: z.enum(MIGRATION_MODES).optional().describe('PreCopy or PostCopy.'),
    policyName: z.string().optional().describe('The MigrationPolicy that applied, if any.'),
    progress: MigrationProgress.optional(),
    downtimeMs: int64(0).optional().describe('The guest pause QEMU measured, in milliseconds.'),
    totalTimeMs: int64(0).optional().describe('The whole migration, in milliseconds.'),
    startTime: Timestamp.optional().describe('When the memory copy started.'),
    endTime: Timestamp.optional().describe('When the migration ended.'),
    failureReason: z.string().max(32768).optional().describe('Why the migration failed or was cancelled.'),
    guestPauseMs: int64(0).optional().describe('The pause the guest saw (source stop to target resume), in milliseconds.'),
    observedGeneration: int64(0).optional().describe('The .metadata.generation this status reflects.'),
  })
  .describe('The observed state of a VirtualMachineMigration, written by the operator only.');
export type VirtualMachineMigrationStatus = z.infer<typeof VirtualMachineMigrationStatus>;

export const VirtualMachineMigration = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('VirtualMachineMigration'),
    metadata: ObjectMeta,
    spec: VirtualMachineMigrationSpec,
    status: VirtualMachineMigrationStatus.optional(),
  })
  .describe('A live migration of one VirtualMachine to another node; deleting it cancels the migration.');
export type VirtualMachineMigration = z.infer<typeof VirtualMachineMigration>;
export type VirtualMachineMigrationInput = z.input<typeof VirtualMachineMigration>;

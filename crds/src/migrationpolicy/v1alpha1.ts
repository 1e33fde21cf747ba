// MigrationPolicy keyvirt.io/v1alpha1 (cluster-scoped): how the VMs it selects
// live-migrate (bandwidth, timeouts, downtime schedule, auto-converge, post-copy)
// and how many migrations may run at once.
import { z } from 'zod';
import { API_VERSION } from '../api-group.ts';
import { conditions, int32, int64, LabelSelector, ObjectMeta } from '../fields.ts';
import { unless, withRules } from '../validation-rule.ts';
import { migrationTuningFields } from './migration-tuning.ts';

export * from './migration-tuning.ts';

export const MigrationPolicySpec = withRules(
  z
    .object({
      selectors: z
        .object({
          namespaceSelector: LabelSelector.optional().describe('Namespaces whose VMs the policy applies to (by namespace labels).'),
          virtualMachineSelector: LabelSelector.optional().describe('VMs the policy applies to (by VM labels).'),
        })
        .prefault({})
        .describe('Which VMs the policy applies to; both selectors must match, an absent selector matches everything. When several policies match, the one with more matching labels wins.'),
      ...migrationTuningFields,
      parallelMigrationsPerCluster: int32(1, 1000).optional().describe('Migrations that may run at once in the cluster (1-1000; default 5).'),
      parallelOutboundMigrationsPerNode: int32(1, 100).optional().describe('Migrations that may leave one node at once (1-100; default 2).'),
    })
    .describe('The desired state of a MigrationPolicy.'),
  [
    {
      cel: '!has(self.parallelMigrationsPerCluster) || !has(self.parallelOutboundMigrationsPerNode) || self.parallelOutboundMigrationsPerNode <= self.parallelMigrationsPerCluster',
      message: 'parallelOutboundMigrationsPerNode cannot exceed parallelMigrationsPerCluster',
      fieldPath: '.parallelOutboundMigrationsPerNode',
      violations: (s) =>
        unless(
          s.parallelMigrationsPerCluster === undefined || s.parallelOutboundMigrationsPerNode === undefined || s.parallelOutboundMigrationsPerNode <= s.parallelMigrationsPerCluster,
          ['parallelOutboundMigrationsPerNode'],
        ),
    },
    {
      cel: '!has(self.progressTimeoutSeconds) || !has(self.completionTimeoutPerGiB) || self.progressTimeoutSeconds <= self.completionTimeoutPerGiB * 1024',
      message: 'progressTimeoutSeconds cannot exceed what completionTimeoutPerGiB allows for the largest VM (1 TiB)',
      fieldPath: '.progressTimeoutSeconds',
      violations: (s) =>
        unless(
          s.progressTimeoutSeconds === undefined || s.completionTimeoutPerGiB === undefined || s.progressTimeoutSeconds <= s.completionTimeoutPerGiB * 1024,
          ['progressTimeoutSeconds'],
        ),
    },
  ],
);
export type MigrationPolicySpec = z.infer<typeof MigrationPolicySpec>;
export type MigrationPolicySpecInput = z.input<typeof MigrationPolicySpec>;

export const MigrationPolicyStatus = z
  .object({
    conditions: conditions(),
    matchedVirtualMachines: int32(0, 2147483647).optional().describe('How many VMs the policy currently applies to.'),
    observedGeneration: int64(0).optional().describe('The .metadata.generation this status reflects.'),
  })
  .describe('The observed state of a MigrationPolicy.');
export type MigrationPolicyStatus = z.infer<typeof MigrationPolicyStatus>;

export const MigrationPolicy = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('MigrationPolicy'),
    metadata: ObjectMeta,
    spec: MigrationPolicySpec,
    status: MigrationPolicyStatus.optional(),
  })
  .describe('A migration policy (cluster-scoped): live-migration settings for the VMs its selectors match.');
export type MigrationPolicy = z.infer<typeof MigrationPolicy>;
export type MigrationPolicyInput = z.input<typeof MigrationPolicy>;

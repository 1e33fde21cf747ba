// VirtualMachine keyvirt.io/v1alpha1: a VM the operator runs in a launcher pod.
import { z } from 'zod';
import { API_VERSION } from '../api-group.ts';
import { Affinity, conditions, int32, int64, ObjectMeta, Timestamp, Toleration } from '../fields.ts';
import { unless, withRules } from '../validation-rule.ts';
import { VirtualMachineTemplate } from './template.ts';

export * from './template.ts';

export const RUN_STRATEGIES = ['Always', 'RerunOnFailure', 'Manual', 'Halted', 'Once'] as const;
export type RunStrategy = (typeof RUN_STRATEGIES)[number];

export const EVICTION_STRATEGIES = ['LiveMigrate', 'Shutdown'] as const;
export type EvictionStrategy = (typeof EVICTION_STRATEGIES)[number];

export const VM_PHASES = [
  'Stopped',
  'Scheduling',
  'Starting',
  'Running',
  'Migrating',
  'Paused',
  'Stopping',
  'Failed',
  'CrashLoop',
  'Unschedulable',
  'Unknown',
] as const;
export type VirtualMachinePhase = (typeof VM_PHASES)[number];

/** Condition types the operator sets on a VirtualMachine. */
export const VM_CONDITION_TYPES = ['Ready', 'LiveMigratable', 'AgentConnected', 'Paused', 'StorageLeaseHeld', 'HighAvailability'] as const;
export type VirtualMachineConditionType = (typeof VM_CONDITION_TYPES)[number];

export const ACCELERATORS = ['kvm', 'tcg'] as const;
export type Accelerator = (typeof ACCELERATORS)[number];

export const MIGRATION_MODES = ['PreCopy', 'PostCopy'] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];

export const HighAvailability = z
  .object({
    enabled: z.boolean().default(false).describe('Restart the VM on another node when its node dies (after its storage lease has provably expired).'),
    priority: int32(0, 100).default(0).describe('Restart priority 0-100 (oVirt: low 1, medium 50, high 100); higher restarts first.'),
  })
  .describe('High availability: the VM comes back on another node when its node fails, and never runs twice.');
export type HighAvailability = z.infer<typeof HighAvailability>;

export const VirtualMachineSpec = withRules(
  z
    .object({
      runStrategy: z
        .enum(RUN_STRATEGIES, { error: 'runStrategy must be one of Always, RerunOnFailure, Manual, Halted, Once' })
        .default('Halted')
        .describe('Always: keep it running; RerunOnFailure: restart it unless the guest shut down cleanly; Manual: start and stop only on request; Halted: keep it stopped (the default); Once: run it once and never restart.'),
      highAvailability: HighAvailability.prefault({ enabled: false, priority: 0 }),
      evictionStrategy: z
        .enum(EVICTION_STRATEGIES, { error: 'evictionStrategy must be LiveMigrate or Shutdown' })
        .default('LiveMigrate')
        .describe('What happens when the node is drained: LiveMigrate (the default) moves the VM, Shutdown stops it.'),
      template: VirtualMachineTemplate,
      nodeSelector: z.record(z.string(), z.string()).optional().describe('Labels a node must carry to run the VM (copied onto the launcher pod).'),
      affinity: Affinity.optional(),
      tolerations: z.array(Toleration).max(64).optional().describe('Tolerations copied onto the launcher pod.'),
      terminationGracePeriodSeconds: int64(0, 3600)
        .default(180)
        .describe('Seconds the guest gets to shut down after an ACPI power-button press before it is powered off (0-3600, default 180).'),
    })
    .describe('The desired state of a VirtualMachine.'),
  [
    {
      cel: "!self.highAvailability.enabled || self.runStrategy in ['Always', 'RerunOnFailure']",
      message: 'highAvailability needs runStrategy Always or RerunOnFailure',
      fieldPath: '.highAvailability.enabled',
      violations: (s) => unless(!s.highAvailability.enabled || s.runStrategy === 'Always' || s.runStrategy === 'RerunOnFailure', ['highAvailability', 'enabled']),
    },
    {
      cel: "self.evictionStrategy != 'LiveMigrate' || !has(self.template.hostDevices) || size(self.template.hostDevices) == 0",
      message: 'a VM with host devices cannot be live-migrated: set evictionStrategy to Shutdown',
      fieldPath: '.evictionStrategy',
      violations: (s) => unless(s.evictionStrategy !== 'LiveMigrate' || s.template.hostDevices.length === 0, ['evictionStrategy']),
    },
  ],
);
export type VirtualMachineSpec = z.infer<typeof VirtualMachineSpec>;
/** The spec as a user may write it (defaults not yet applied). */
export type VirtualMachineSpecInput = z.input<typeof VirtualMachineSpec>;

export const VirtualMachineInterfaceStatus = z
  .object({
    name: z.string().describe('The interface name from spec.template.interfaces.'),
    macAddress: z.string().optional().describe('The MAC address in use.'),
    ipAddress: z.string().optional().describe('The primary IP address (the pod IP for masquerade, the guest-reported address otherwise).'),
    ipAddresses: z.array(z.string()).optional().describe('Every IP address the guest reports on this interface.'),
    interfaceName: z.string().optional().describe('The interface name inside the guest, as the guest agent reports it.'),
  })
  .describe('The observed state of one network interface.');
export type VirtualMachineInterfaceStatus = z.infer<typeof VirtualMachineInterfaceStatus>;

export const GuestOSInfo = z
  .object({
    id: z.string().optional().describe('The OS id, e.g. debian.'),
    name: z.string().optional().describe('The OS name, e.g. Debian GNU/Linux.'),
    prettyName: z.string().optional().describe('The full OS name and version.'),
    version: z.string().optional().describe('The OS version.'),
    versionId: z.string().optional().describe('The OS version id, e.g. 12.'),
    kernelRelease: z.string().optional().describe('The kernel release, e.g. 6.1.0-27-amd64.'),
    kernelVersion: z.string().optional().describe('The kernel version string.'),
    machine: z.string().optional().describe('The guest architecture, e.g. x86_64.'),
    hostname: z.string().optional().describe('The guest host name.'),
  })
  .describe('The guest OS as the guest agent reports it.');
export type GuestOSInfo = z.infer<typeof GuestOSInfo>;

export const VirtualMachineMigrationState = z
  .object({
    migrationName: z.string().optional().describe('The VirtualMachineMigration driving the migration.'),
    sourceNode: z.string().optional().describe('The node the VM migrates from.'),
    targetNode: z.string().optional().describe('The node the VM migrates to.'),
    sourcePod: z.string().optional().describe('The source launcher pod.'),
    targetPod: z.string().optional().describe('The target launcher pod.'),
    mode: z.enum(MIGRATION_MODES).optional().describe('PreCopy or PostCopy.'),
    startTime: Timestamp.optional().describe('When the migration started.'),
    endTime: Timestamp.optional().describe('When the migration ended.'),
    completed: z.boolean().optional().describe('The migration finished and the target runs the VM.'),
    failed: z.boolean().optional().describe('The migration failed; the source kept running the VM.'),
    result: z.enum(['Succeeded', 'Failed', 'Cancelled']).optional().describe('How the migration ended: Succeeded, Failed or Cancelled; absent while it runs.'),
  })
  .describe('The latest live migration of the VM.');
export type VirtualMachineMigrationState = z.infer<typeof VirtualMachineMigrationState>;

export const VirtualMachineStatus = z
  .object({
    phase: z.enum(VM_PHASES).optional().describe('Stopped, Scheduling, Starting, Running, Migrating, Paused, Stopping, Failed, CrashLoop, Unschedulable or Unknown (the launcher cannot be heard: its node is unreachable or it is silent).'),
    ready: z.boolean().optional().describe('The VM runs and its Ready condition is True.'),
    conditions: conditions(),
    nodeName: z.string().optional().describe('The node that runs the VM.'),
    launcherPod: z.string().optional().describe('The launcher pod that runs the VM.'),
    accelerator: z.enum(ACCELERATORS).optional().describe('kvm or tcg (software emulation): how QEMU runs the guest.'),
    interfaces: z.array(VirtualMachineInterfaceStatus).optional().describe('The observed network interfaces.'),
    guestOSInfo: GuestOSInfo.optional(),
    migrationState: VirtualMachineMigrationState.optional(),
    restartCount: int32(0, 2147483647).optional().describe('How often the VM was restarted after a failure.'),
    startFailure: z
      .object({
        consecutiveFailCount: int32(0, 2147483647).describe('Start attempts that failed in a row.'),
        lastFailedStartTime: Timestamp.optional().describe('When the last start attempt failed.'),
        retryAfterTime: Timestamp.optional().describe('When the next start attempt happens (CrashLoop backoff).'),
      })
      .optional()
      .describe('The start failures behind a CrashLoop phase.'),
    observedGeneration: int64(0).optional().describe('The .metadata.generation this status reflects.'),
  })
  .describe('The observed state of a VirtualMachine, written by the operator only.');
export type VirtualMachineStatus = z.infer<typeof VirtualMachineStatus>;

export const VirtualMachine = withRules(
  z
    .object({
      apiVersion: z.literal(API_VERSION),
      kind: z.literal('VirtualMachine'),
      metadata: ObjectMeta,
      spec: VirtualMachineSpec,
      status: VirtualMachineStatus.optional(),
    })
    .describe('A KVM virtual machine run by KeyVirt in its own launcher pod.'),
  [
    {
      cel: '!has(self.metadata.name) || self.metadata.name.size() <= 63',
      message: 'a VirtualMachine name must be at most 63 characters (it names the launcher pod and the guest host name)',
      fieldPath: '.metadata.name',
      violations: (vm) => unless(vm.metadata.name.length <= 63, ['metadata', 'name']),
    },
    {
      cel: "!has(self.metadata.name) || !self.metadata.name.contains('.')",
      message: 'a VirtualMachine name must not contain a dot (it is the guest host name and names the launcher pod)',
      fieldPath: '.metadata.name',
      violations: (vm) => unless(!vm.metadata.name.includes('.'), ['metadata', 'name']),
    },
  ],
);
export type VirtualMachine = z.infer<typeof VirtualMachine>;
export type VirtualMachineInput = z.input<typeof VirtualMachine>;

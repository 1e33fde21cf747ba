// Whether a VM can live-migrate, and why not. Each cause has a stable, machine-readable
// reason (KubeVirt's names) and a message a person understands; the VM's LiveMigratable
// condition carries the first reason in a fixed order and every message, and a
// VirtualMachineMigration of a VM that cannot move fails at once with the same reason.
// The causes: a disk not every node can open at once (a local or iscsi/fc domain, a
// storageClass domain or a claim that is ReadWriteOnce), a host device passed through,
// an interface whose guest holds the pod's own IP (bridge), and a CPU model that is the
// node's exact CPU (host-passthrough), and a launcher the node agent runs (ADR 0134).
import { CPU_MODEL_HOST_PASSTHROUGH, type Condition, type VirtualMachine } from '@keyvirt/crds';

/** The reasons, in the order the condition reports them. */
export const NOT_MIGRATABLE_REASONS = ['DisksNotLiveMigratable', 'HostDeviceNotLiveMigratable', 'InterfaceNotLiveMigratable', 'CPUModeNotLiveMigratable'] as const;
export type NotMigratableReason = (typeof NOT_MIGRATABLE_REASONS)[number];

/** One cause that keeps a VM from live-migrating. */
export interface NotMigratable {
  readonly reason: NotMigratableReason;
  readonly message: string;
}

export const LIVE_MIGRATABLE = 'LiveMigratable';
/** The condition reason when nothing blocks a live migration. */
export const MIGRATABLE_REASON = 'Migratable';

/** The disks that not every node can open, from their resolution (disk-volumes.ts says why for each). */
export function notMigratableDiskReasons(disks: readonly { readonly notMigratableReason?: string | undefined }[]): NotMigratable[] {
  return disks.flatMap((d) => (d.notMigratableReason === undefined ? [] : [{ reason: 'DisksNotLiveMigratable' as const, message: d.notMigratableReason }]));
}

/** What in the VM's template keeps it on its node, whatever its disks. */
export function notMigratableTemplateReasons(vm: VirtualMachine): NotMigratable[] {
  const t = vm.spec.template;
  return [
    ...t.hostDevices.map((h) => ({
      reason: 'HostDeviceNotLiveMigratable' as const,
      message: `host device ${h.name} (${h.resourceName}) is passed through with VFIO: its state cannot be copied to another node`,
    })),
    ...t.interfaces
      .filter((i) => i.binding === 'bridge')
      .map((i) => ({
        reason: 'InterfaceNotLiveMigratable' as const,
        message: `interface ${i.name} uses the bridge binding: the guest holds the launcher pod's IP, which the target pod does not have`,
      })),
    ...(t.cpu.model === CPU_MODEL_HOST_PASSTHROUGH
      ? [
          {
            reason: 'CPUModeNotLiveMigratable' as const,
            message: 'the CPU model is host-passthrough: the guest sees this node\'s exact CPU, which no other node is guaranteed to match (use host-model or a named model)',
          },
        ]
      : []),
  ];
}

/** Every cause, in the condition's order (stable within one reason). Empty when the VM can live-migrate. */
export function notMigratableReasons(vm: VirtualMachine, disks: readonly { readonly notMigratableReason?: string | undefined }[]): NotMigratable[] {
  return sortReasons([...notMigratableDiskReasons(disks), ...notMigratableTemplateReasons(vm)]);
}

function sortReasons(reasons: readonly NotMigratable[]): NotMigratable[] {
  return reasons
    .map((r, i) => ({ r, i }))
    .sort((a, b) => NOT_MIGRATABLE_REASONS.indexOf(a.r.reason) - NOT_MIGRATABLE_REASONS.indexOf(b.r.reason) || a.i - b.i)
    .map(({ r }) => r);
}

/** The LiveMigratable condition (without its transition time) for these causes. */
export function liveMigratableCondition(reasons: readonly NotMigratable[]): Omit<Condition, 'lastTransitionTime'> {
  const sorted = sortReasons(reasons);
  const first = sorted[0];
  if (first === undefined) return { type: LIVE_MIGRATABLE, status: 'True', reason: MIGRATABLE_REASON, message: 'the VM can be live-migrated' };
  return { type: LIVE_MIGRATABLE, status: 'False', reason: first.reason, message: sorted.map((r) => r.message).join('; ') };
}

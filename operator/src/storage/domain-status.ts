// A StorageDomain's observed state from what the controller found: its phase
// (Activating → Active → PreparingForMaintenance → Maintenance, or Error),
// capacity as quantities, and conditions (Ready, Mounted, LowSpace, CriticalSpace,
// MaintenanceBlocked, DeletionBlocked) whose transition times survive reconciles.
import type { Condition, StorageDomain, StorageDomainPhase, StorageDomainStatus } from '@keyvirt/crds';

export type BackingState =
  | { readonly state: 'ready' }
  | { readonly state: 'waiting'; readonly reason: string; readonly message: string }
  | { readonly state: 'error'; readonly reason: string; readonly message: string };

export interface Capacity {
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly freeBytes: number;
}

export interface DomainDisk {
  readonly namespace: string;
  readonly vmName: string;
  readonly diskName: string;
  readonly size?: string | undefined;
  /** The UID of the VM the image was made for. */
  readonly vmUid?: string | undefined;
}

/** A disk a VM wants that the domain does not create, and why. */
export interface RefusedDisk {
  readonly namespace: string;
  readonly vmName: string;
  readonly diskName: string;
  readonly reason: string;
  readonly message: string;
}

export interface DomainObservation {
  readonly backing: BackingState;
  /** The latest measurement; absent until a job reported one. */
  readonly capacity: Capacity | undefined;
  /** A job has mounted the volume on a node and finished (its report may have been lost). */
  readonly probed: boolean;
  /** Why the probe has not run yet, when it is stuck. */
  readonly probeWaiting?: string | undefined;
  /** Whether capacity can be measured at all (storageClass domains have no single volume). */
  readonly measurable: boolean;
  /** Running VMs (namespace/name) with a disk on the domain. */
  readonly runningVms: readonly string[];
  /** VMs (namespace/name) with a disk on the domain, running or not. */
  readonly vms: readonly string[];
  readonly disks: readonly DomainDisk[];
  /** Wanted disks the domain refuses (overcommit, critical space …). */
  readonly refused?: readonly RefusedDisk[] | undefined;
  readonly deleting: boolean;
  readonly now: Date;
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** Bytes as an exact-enough quantity: whole Gi or Mi when exact, else Mi rounded down. */
export function bytesQuantity(bytes: number): string {
  if (bytes % GiB === 0) return `${bytes / GiB}Gi`;
  return `${Math.floor(bytes / MiB)}Mi`;
}

export function usedPercent(c: Capacity): number {
  const usable = c.usedBytes + c.freeBytes;
  return usable === 0 ? 100 : (100 * c.usedBytes) / usable;
}

/** Free space is below the critical blocker: no new disks. */
export function isCritical(sd: StorageDomain, c: Capacity | undefined): boolean {
  return c !== undefined && c.freeBytes < sd.spec.thresholds.criticalFreeGiB * GiB;
}

function phaseOf(sd: StorageDomain, o: DomainObservation): StorageDomainPhase {
  if (o.backing.state === 'error') return 'Error';
  if (o.backing.state === 'waiting') return 'Activating';
  if (o.measurable && !o.probed) return 'Activating';
  if (sd.spec.maintenance) return o.runningVms.length > 0 ? 'PreparingForMaintenance' : 'Maintenance';
  return 'Active';
}

type ConditionInput = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

function listNames(names: readonly string[], max = 5): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

function mountedCondition(o: DomainObservation): ConditionInput {
  if (o.backing.state !== 'ready') return { type: 'Mounted', status: 'False', reason: o.backing.reason, message: o.backing.message };
  if (o.measurable && !o.probed) {
    return { type: 'Mounted', status: 'Unknown', reason: 'Probing', message: o.probeWaiting ?? 'measuring the domain on a node' };
  }
  if (o.measurable && o.capacity === undefined) {
    return { type: 'Mounted', status: 'True', reason: 'CapacityNotReported', message: 'the volume mounts on a node, but the probe reported no capacity (no termination message)' };
  }
  return { type: 'Mounted', status: 'True', reason: 'VolumeReady', message: 'the backing volume is bound and reachable from a node' };
}

function readyCondition(phase: StorageDomainPhase, o: DomainObservation, critical: boolean): ConditionInput {
  if (phase === 'Active' && critical) {
    return { type: 'Ready', status: 'False', reason: 'CriticalSpace', message: 'free space is below the critical threshold: no new disks are created' };
  }
  if (phase === 'Active') return { type: 'Ready', status: 'True', reason: 'Active', message: 'the domain is active' };
  const messages: Partial<Record<StorageDomainPhase, string>> = {
    Activating: o.backing.state === 'ready' ? (o.probeWaiting ?? 'measuring the domain on a node') : o.backing.state === 'waiting' ? o.backing.message : '',
    Error: o.backing.state === 'error' ? o.backing.message : '',
    PreparingForMaintenance: 'maintenance requested: no new disks; waiting for the running VMs that use the domain to stop',
    Maintenance: 'the domain is in maintenance: no new disks',
  };
  return { type: 'Ready', status: 'False', reason: phase, message: messages[phase] ?? phase };
}

function capacityConditions(sd: StorageDomain, c: Capacity | undefined): ConditionInput[] {
  if (c === undefined) return [];
  const pct = usedPercent(c);
  const warn = sd.spec.thresholds.warningPercent;
  const critical = sd.spec.thresholds.criticalFreeGiB;
  const shown = `${pct.toFixed(1)}% used, ${bytesQuantity(c.freeBytes)} free of ${bytesQuantity(c.capacityBytes)}`;
  return [
    pct >= warn
      ? { type: 'LowSpace', status: 'True', reason: 'AboveWarningThreshold', message: `${shown} (warning at ${warn}%)` }
      : { type: 'LowSpace', status: 'False', reason: 'BelowWarningThreshold', message: `${shown} (warning at ${warn}%)` },
    isCritical(sd, c)
      ? { type: 'CriticalSpace', status: 'True', reason: 'BelowCriticalFree', message: `${shown}: less than ${critical}Gi free, no new disks` }
      : { type: 'CriticalSpace', status: 'False', reason: 'EnoughFreeSpace', message: `${shown} (critical below ${critical}Gi free)` },
  ];
}

function maintenanceCondition(sd: StorageDomain, o: DomainObservation): ConditionInput | undefined {
  if (!sd.spec.maintenance) return undefined;
  if (o.runningVms.length === 0) {
    return { type: 'MaintenanceBlocked', status: 'False', reason: 'NoRunningVms', message: 'no running VM uses the domain' };
  }
  return {
    type: 'MaintenanceBlocked',
    status: 'True',
    reason: 'VmsRunning',
    message: `cannot enter Maintenance: ${o.runningVms.length} running VM(s) use the domain: ${listNames(o.runningVms)}`,
  };
}

function deletionCondition(o: DomainObservation): ConditionInput | undefined {
  if (!o.deleting) return undefined;
  if (o.disks.length === 0 && o.vms.length === 0) return undefined;
  const disks = o.disks.map((d) => `${d.namespace}/${d.vmName}/${d.diskName}`);
  return {
    type: 'DeletionBlocked',
    status: 'True',
    reason: 'DisksExist',
    message: `the domain still holds ${o.disks.length} disk(s)${disks.length > 0 ? ` (${listNames(disks)})` : ''} used by ${o.vms.length} VM(s); delete those VMs first`,
  };
}

/** Keeps lastTransitionTime when the status of a condition did not change. */
export function mergeConditions(previous: readonly Condition[] | undefined, next: readonly ConditionInput[], now: Date, generation: number | undefined): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old !== undefined && old.status === c.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    return { ...c, lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
  });
}

export function domainStatus(sd: StorageDomain, o: DomainObservation): StorageDomainStatus {
  const phase = phaseOf(sd, o);
  const critical = isCritical(sd, o.capacity);
  const conditions: ConditionInput[] = [
    readyCondition(phase, o, critical),
    mountedCondition(o),
    ...capacityConditions(sd, o.capacity),
    ...[maintenanceCondition(sd, o), deletionCondition(o)].filter((c): c is ConditionInput => c !== undefined),
  ];
  const c = o.capacity;
  return {
    phase,
    conditions: mergeConditions(sd.status?.conditions, conditions, o.now, sd.metadata.generation),
    ...(c === undefined
      ? {}
      : { capacity: bytesQuantity(c.capacityBytes), used: bytesQuantity(c.usedBytes), free: bytesQuantity(c.freeBytes) }),
    diskCount: o.disks.length,
    vmCount: o.vms.length,
    disks: o.disks.map((d) => ({
      namespace: d.namespace,
      vmName: d.vmName,
      diskName: d.diskName,
      ...(d.size === undefined ? {} : { size: d.size }),
      ...(d.vmUid === undefined ? {} : { vmUid: d.vmUid }),
    })),
    ...((o.refused ?? []).length === 0
      ? {}
      : {
          refusedDisks: (o.refused ?? []).slice(0, 1000).map((r) => ({ namespace: r.namespace, vmName: r.vmName, diskName: r.diskName, reason: r.reason, message: r.message.slice(0, 1024) })),
        }),
    ...(sd.metadata.generation === undefined ? {} : { observedGeneration: sd.metadata.generation }),
  };
}

/** The status's capacity back in bytes (what the previous measurement said). */
export function capacityFromStatus(status: StorageDomainStatus | undefined, parse: (q: string) => number | undefined): Capacity | undefined {
  if (status?.capacity === undefined || status.used === undefined || status.free === undefined) return undefined;
  const capacityBytes = parse(status.capacity);
  const usedBytes = parse(status.used);
  const freeBytes = parse(status.free);
  if (capacityBytes === undefined || usedBytes === undefined || freeBytes === undefined) return undefined;
  return { capacityBytes, usedBytes, freeBytes };
}

// What the StorageDomain controller remembers per domain between reconciles, and what
// one reconcile of one domain works with.
import type { StorageDomain, StorageDomainStatus } from '@keyvirt/crds';
import type { ReconcileContext } from '../runtime/controller.ts';
import type { OwnerRef, BackingVolumePlan } from './backing-volume.ts';
import type { HoldReason } from './disk-retention.ts';
import type { Capacity } from './domain-status.ts';

export interface DomainMemory {
  lastProbeMs: number;
  /** A job mounted the volume and finished since the operator started (or status shows an earlier one). */
  probed: boolean;
  capacity: Capacity | undefined;
  /** Job name → when it last failed (ms). */
  failures: Map<string, number>;
  /** Why the probe pod has not run yet (unschedulable, waiting), for the Mounted condition. */
  probeWaiting: string | undefined;
  written: StorageDomainStatus | undefined;
  /** The domain's resourceVersion after that write (guards the next write until the cache shows it). */
  writtenResourceVersion?: string | undefined;
  /** Listed disks (namespace/vm/disk) no cached VM wants that are kept, and why. */
  held: Map<string, HoldReason>;
  /** Wanted disks not created, and why (namespace/vm/disk → reason), for events on transitions. */
  refused: Map<string, string>;
}

export interface Pass {
  readonly sd: StorageDomain;
  readonly plan: BackingVolumePlan;
  readonly owner: OwnerRef;
  readonly memory: DomainMemory;
  readonly now: number;
  readonly ctx: ReconcileContext;
}

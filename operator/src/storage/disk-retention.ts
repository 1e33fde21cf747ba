// Which listed disk images stay and which go (ADR 0103). An image is deleted only
// when the VM it was created for (by UID) is provably gone — the API server answers
// 404 for its name, or a VM of another UID holds the name — and no launcher pod of
// that VM is still running. Absence from a cache proves nothing: a VM outside the
// operator's selector, one that fails the operator's schema, or one that dropped the
// disk from its spec keeps the image. Pure: the controller gathers the facts.
import type { DomainDisk } from './domain-status.ts';
import { diskKey } from './names.ts';

/** A disk the domain's status lists, with the UID of the VM it was made for (absent in status written before UIDs were recorded). */
export interface ListedDisk extends DomainDisk {
  readonly vmUid?: string | undefined;
}

/** The VMs in the operator's cache that want a disk, by namespace/vm/disk → VM UID. */
export type WantingVms = ReadonlyMap<string, string | undefined>;

/** What the API server said about the disk's VM, looked up by name (never from a cache). */
export type OwnerLookup =
  | { readonly kind: 'present'; readonly uid: string | undefined; readonly schemaProblem?: string | undefined }
  | { readonly kind: 'absent' }
  | { readonly kind: 'failed'; readonly message: string };

/** Why a listed disk that no cached VM wants is kept. */
export type HoldReason = 'Detached' | 'OwnerUnparsable' | 'OwnerLookupFailed' | 'LauncherRunning' | 'DomainHeld';

export type ListedVerdict =
  /** A cached VM of the same UID wants it. `adoptUid` records the UID on an entry that had none. */
  | { readonly action: 'keep-in-use'; readonly adoptUid?: string | undefined }
  /** Nobody in the cache wants it: look the owner up before deciding. */
  | { readonly action: 'look-up' };

/** First pass, from the cache alone: in use, or to be looked up. Never a deletion. */
export function listedVerdict(disk: ListedDisk, wanting: WantingVms): ListedVerdict {
  const key = diskKey(disk);
  if (!wanting.has(key)) return { action: 'look-up' };
  const uid = wanting.get(key);
  if (disk.vmUid === undefined) return { action: 'keep-in-use', adoptUid: uid };
  if (uid === undefined || uid === disk.vmUid) return { action: 'keep-in-use' };
  // The name is held by a VM of another UID: the disk's own VM is gone.
  return { action: 'look-up' };
}

export type Retention =
  | { readonly action: 'keep'; readonly reason: HoldReason; readonly message: string }
  | { readonly action: 'delete' };

export interface RetentionFacts {
  readonly disk: ListedDisk;
  readonly owner: OwnerLookup;
  /** Launcher pods of the disk's VM (by name) that have not finished; only needed once the owner is gone. */
  readonly activeLaunchers: readonly string[];
}

function vmOf(d: DomainDisk): string {
  return `${d.namespace}/${d.vmName}`;
}

/** Second pass, from the API server's answers: keep (with why) or delete. */
export function retention(f: RetentionFacts): Retention {
  const { disk, owner } = f;
  if (owner.kind === 'failed') {
    return { action: 'keep', reason: 'OwnerLookupFailed', message: `VirtualMachine ${vmOf(disk)} could not be looked up: ${owner.message}` };
  }
  if (owner.kind === 'present') {
    if (owner.schemaProblem !== undefined) {
      return { action: 'keep', reason: 'OwnerUnparsable', message: `VirtualMachine ${vmOf(disk)} does not match the operator's schema (${owner.schemaProblem})` };
    }
    // Same UID, or an entry from before UIDs were recorded: the VM that may own it exists.
    if (disk.vmUid === undefined || owner.uid === undefined || owner.uid === disk.vmUid) {
      return { action: 'keep', reason: 'Detached', message: `VirtualMachine ${vmOf(disk)} exists but no longer lists disk ${disk.diskName}: the image stays until the VM is deleted` };
    }
  }
  if (f.activeLaunchers.length > 0) {
    return { action: 'keep', reason: 'LauncherRunning', message: `launcher pod ${f.activeLaunchers.join(', ')} of ${vmOf(disk)} has not finished and may hold the image open` };
  }
  return { action: 'delete' };
}

/** While any disk's VM fails the schema, nothing on the domain is deleted: the cache cannot be trusted to be whole. */
export function holdAll(decisions: ReadonlyMap<string, Retention>): Map<string, Retention> {
  const unparsable = [...decisions.values()].find((r) => r.action === 'keep' && r.reason === 'OwnerUnparsable');
  if (unparsable === undefined || unparsable.action !== 'keep') return new Map(decisions);
  const out = new Map<string, Retention>();
  for (const [key, r] of decisions) {
    out.set(key, r.action === 'delete' ? { action: 'keep', reason: 'DomainHeld', message: `no disk is deleted while ${unparsable.message}` } : r);
  }
  return out;
}

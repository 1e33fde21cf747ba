// Which wanted disks the StorageDomain controller creates now, and why it refuses the
// others (ADR 0105): not while the domain takes no new disks (maintenance, deletion,
// below the critical free space), not while the same path still holds the image of a
// VM of another UID (its deletion comes first), and not past the thin-provisioning
// limit — the virtual sizes of every disk on the domain, plus the new one, may reach
// capacity × overcommitPercent / 100. Pure: the order is the VMs' age, then the key,
// so that older VMs get the space first and a reconcile repeats the same answer.
import type { WantedDisk } from './domain-disks.ts';
import type { ListedDisk } from './disk-retention.ts';
import { diskKey } from './names.ts';

export interface WantedByVm extends WantedDisk {
  readonly vmUid: string | undefined;
  /** The VM's creationTimestamp (ms); older VMs come first. */
  readonly vmCreatedMs: number;
}

export type DomainGate =
  | { readonly open: true }
  | { readonly open: false; readonly reason: 'Maintenance' | 'Deleting' | 'CriticalSpace' | 'NotMeasured'; readonly message: string };

export interface AdmissionInput {
  readonly wanted: readonly WantedByVm[];
  readonly listed: readonly ListedDisk[];
  readonly gate: DomainGate;
  /** The domain's measured capacity; absent when unknown or not measurable (no limit applies then). */
  readonly capacityBytes: number | undefined;
  readonly overcommitPercent: number;
  readonly parseBytes: (quantity: string) => number | undefined;
}

export interface Refusal {
  readonly disk: WantedByVm;
  readonly reason: string;
  readonly message: string;
}

export interface Admission {
  readonly create: readonly WantedByVm[];
  readonly refused: readonly Refusal[];
}

const GiB = 2 ** 30;

function shown(bytes: number): string {
  return bytes % GiB === 0 ? `${bytes / GiB}Gi` : `${(bytes / GiB).toFixed(2)}Gi`;
}

export function admitDisks(input: AdmissionInput): Admission {
  const listedByKey = new Map(input.listed.map((d) => [diskKey(d), d]));
  let provisioned = input.listed.reduce((sum, d) => sum + (d.size === undefined ? 0 : (input.parseBytes(d.size) ?? 0)), 0);
  const limit = input.capacityBytes === undefined ? undefined : Math.floor((input.capacityBytes * input.overcommitPercent) / 100);
  const create: WantedByVm[] = [];
  const refused: Refusal[] = [];
  const ordered = [...input.wanted].sort((a, b) => a.vmCreatedMs - b.vmCreatedMs || diskKey(a).localeCompare(diskKey(b)));
  for (const disk of ordered) {
    const listed = listedByKey.get(diskKey(disk));
    if (listed !== undefined) {
      if (listed.vmUid === undefined || disk.vmUid === undefined || listed.vmUid === disk.vmUid) continue;
      refused.push({
        disk,
        reason: 'PreviousImagePending',
        message: `disk ${disk.diskName}: the image of an earlier VirtualMachine ${disk.namespace}/${disk.vmName} (UID ${listed.vmUid}) is deleted first`,
      });
      continue;
    }
    if (!input.gate.open) {
      if (input.gate.reason !== 'NotMeasured') refused.push({ disk, reason: input.gate.reason, message: `disk ${disk.diskName}: ${input.gate.message}` });
      continue;
    }
    if (limit !== undefined && provisioned + disk.sizeBytes > limit) {
      refused.push({
        disk,
        reason: 'Overcommitted',
        message: `disk ${disk.diskName} (${disk.size}) would bring the disks on the domain to ${shown(provisioned + disk.sizeBytes)}, over its limit of ${shown(limit)} (${input.overcommitPercent}% of ${shown(input.capacityBytes ?? 0)})`,
      });
      continue;
    }
    provisioned += disk.sizeBytes;
    create.push(disk);
  }
  return { create, refused };
}

// Whether a VM's disk on a StorageDomain is ready, as the domain's status says: listed
// for this VM's UID (an entry of another UID is the image of an earlier VM of the same
// name, about to be deleted — never to be opened by this one), refused with a reason,
// or not made yet. The VM controller starts a VM only on ready disks.
import type { StorageDomain } from '@keyvirt/crds';

export type DomainDiskState =
  | { readonly state: 'ready' }
  | { readonly state: 'refused'; readonly reason: string; readonly message: string }
  | { readonly state: 'pending'; readonly message: string };

export interface VmDisk {
  readonly namespace: string;
  readonly vmName: string;
  readonly vmUid: string | undefined;
  readonly diskName: string;
}

export function domainDiskState(sd: StorageDomain, d: VmDisk): DomainDiskState {
  const same = (x: { namespace: string; vmName: string; diskName: string }): boolean => x.namespace === d.namespace && x.vmName === d.vmName && x.diskName === d.diskName;
  const listed = sd.status?.disks?.find(same);
  if (listed !== undefined && (listed.vmUid === undefined || d.vmUid === undefined || listed.vmUid === d.vmUid)) return { state: 'ready' };
  const refused = sd.status?.refusedDisks?.find(same);
  if (refused !== undefined) return { state: 'refused', reason: refused.reason, message: refused.message };
  if (listed !== undefined) return { state: 'pending', message: `disk ${d.diskName}: the image of an earlier VM named ${d.vmName} on StorageDomain ${sd.metadata.name} is deleted first` };
  return { state: 'pending', message: `disk ${d.diskName}: the image on StorageDomain ${sd.metadata.name} is not created yet` };
}

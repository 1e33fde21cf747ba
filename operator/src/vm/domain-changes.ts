// Which VMs a StorageDomain's update concerns. The VM controller reads a domain's spec,
// its phase and the entries of its disk lists (disk-volumes.ts); the capacity figures,
// counts and conditions a probe rewrites every minute concern no VM. A domain holding
// thousands of disks would otherwise have every one of its VMs reconciled at each probe.
import { isDeepStrictEqual } from 'node:util';
import type { StorageDomain } from '@keyvirt/crds';
import { keyOf } from '../runtime/resource.ts';

/** The VM keys (namespace/name) of a domain's listed and refused disk entries whose content differs between `old` and `sd`. */
function changedEntries(old: StorageDomain, sd: StorageDomain): Set<string> {
  const byVm = (status: StorageDomain['status']): Map<string, unknown[]> => {
    const out = new Map<string, unknown[]>();
    for (const entry of [...(status?.disks ?? []), ...(status?.refusedDisks ?? [])]) {
      const key = keyOf({ namespace: entry.namespace, name: entry.vmName });
      out.set(key, [...(out.get(key) ?? []), entry]);
    }
    return out;
  };
  const before = byVm(old.status);
  const after = byVm(sd.status);
  const changed = new Set<string>();
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    if (!isDeepStrictEqual(before.get(key), after.get(key))) changed.add(key);
  }
  return changed;
}

/**
 * The keys of the VMs an update of a domain concerns: every VM on it (`onDomain`) when
 * its spec or phase changed; else the VMs whose disk entries changed; else none.
 */
export function vmsConcernedByDomainUpdate(old: StorageDomain, sd: StorageDomain, onDomain: (sd: StorageDomain) => readonly string[]): readonly string[] {
  if (old.status?.phase !== sd.status?.phase || !isDeepStrictEqual(old.spec, sd.spec)) return [...new Set([...onDomain(old), ...onDomain(sd)])];
  return [...changedEntries(old, sd)];
}

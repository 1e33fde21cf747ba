// One PersistentVolumeClaim, one VM: two VMs writing one disk image corrupt it. A VM
// whose disk names a claim another VM of its namespace already uses does not start
// (ADR 0105). The holder is the VM that runs (it has the image open), else the older
// one (creationTimestamp, then name); a running VM is never the one blocked. A claim
// named like another VM's per-disk claim on a storageClass domain counts as that VM's.
// Readers share: VMs that all attach the claim read-only (a common boot or ISO image)
// never block one another; a writer conflicts with every other user.
import type { VirtualMachine } from '@keyvirt/crds';
import { diskClaimName } from '../storage/names.ts';

function runs(vm: VirtualMachine): boolean {
  return (vm.status?.launcherPod ?? '') !== '' || ['Starting', 'Running', 'Migrating', 'Paused', 'Stopping'].includes(vm.status?.phase ?? '');
}

type ClaimUse = 'none' | 'read' | 'write';

function claimUse(vm: VirtualMachine, claimName: string): ClaimUse {
  const namespace = vm.metadata.namespace ?? 'default';
  const users = vm.spec.template.disks.filter(
    (d) =>
      d.persistentVolumeClaim?.claimName === claimName ||
      (d.storageDomain !== undefined && diskClaimName({ namespace, vmName: vm.metadata.name, diskName: d.name }) === claimName),
  );
  if (users.length === 0) return 'none';
  return users.every((d) => d.readOnly && d.persistentVolumeClaim !== undefined) ? 'read' : 'write';
}

function older(a: VirtualMachine, b: VirtualMachine): boolean {
  const ta = Date.parse(a.metadata.creationTimestamp ?? '');
  const tb = Date.parse(b.metadata.creationTimestamp ?? '');
  if (!Number.isNaN(ta) && !Number.isNaN(tb) && ta !== tb) return ta < tb;
  return a.metadata.name < b.metadata.name;
}

/** The VM (namespace/name) that holds `claimName` ahead of `vm`, if any. */
export function claimHolder(vm: VirtualMachine, claimName: string, vms: readonly VirtualMachine[]): string | undefined {
  if (runs(vm)) return undefined;
  const namespace = vm.metadata.namespace ?? 'default';
  const mine = claimUse(vm, claimName);
  const conflicts = (o: VirtualMachine): boolean => {
    const theirs = claimUse(o, claimName);
    return theirs !== 'none' && (mine === 'write' || theirs === 'write');
  };
  const others = vms.filter(
    (o) => (o.metadata.namespace ?? 'default') === namespace && o.metadata.name !== vm.metadata.name && (o.metadata.deletionTimestamp === undefined || runs(o)) && conflicts(o),
  );
  const holder = others.find(runs) ?? others.find((o) => older(o, vm));
  return holder === undefined ? undefined : `${namespace}/${holder.metadata.name}`;
}

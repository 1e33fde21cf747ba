// One PersistentVolumeClaim, one VM: two VMs writing one disk image corrupt it. A VM
// whose disk names a claim another VM of its namespace already uses does not start
// (ADR 0105). The holder is the VM that runs (it has the image open), else the older
// one (creationTimestamp, then name); a running VM is never the one blocked. A claim
// named like another VM's per-disk claim on a storageClass domain counts as that VM's.
import type { VirtualMachine } from '@keyvirt/crds';
import { diskClaimName } from '../storage/names.ts';

function runs(vm: VirtualMachine): boolean {
  return (vm.status?.launcherPod ?? '') !== '' || ['Starting', 'Running', 'Migrating', 'Paused', 'Stopping'].includes(vm.status?.phase ?? '');
}

function usesClaim(vm: VirtualMachine, claimName: string): boolean {
  const namespace = vm.metadata.namespace ?? 'default';
  return vm.spec.template.disks.some(
    (d) =>
      d.persistentVolumeClaim?.claimName === claimName ||
      (d.storageDomain !== undefined && diskClaimName({ namespace, vmName: vm.metadata.name, diskName: d.name }) === claimName),
  );
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
  const others = vms.filter(
    (o) => (o.metadata.namespace ?? 'default') === namespace && o.metadata.name !== vm.metadata.name && (o.metadata.deletionTimestamp === undefined || runs(o)) && usesClaim(o, claimName),
  );
  const holder = others.find(runs) ?? others.find((o) => older(o, vm));
  return holder === undefined ? undefined : `${namespace}/${holder.metadata.name}`;
}

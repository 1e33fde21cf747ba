// Which disk images should exist on a domain (from the VMs that reference it), and
// which VMs count as running for maintenance.
import { parseQuantity, virtualMachineImagePath, type StorageDomainDiskSource, type VirtualMachine } from '@keyvirt/crds';
import { diskKey, type DiskRef } from './names.ts';

export interface WantedDisk extends DiskRef {
  /** The image path relative to the domain root (the layout the VM controller mounts). */
  readonly image: string;
  readonly format: 'qcow2' | 'raw';
  readonly size: string;
  readonly sizeBytes: number;
  readonly backing?: string | undefined;
}

/** Where backing images (templates) live on a domain. */
export const TEMPLATES_DIR = 'templates';

/**
 * The backing file of a disk, relative to the domain root: a template, or a
 * VirtualMachineImage of the VM's own namespace (stored as qcow2; a tenant cannot name
 * another namespace's image, and the file exists only once the import renamed it in).
 */
export function diskBacking(namespace: string, source: Pick<StorageDomainDiskSource, 'backingImage' | 'image'>): string | undefined {
  if (source.image !== undefined) return virtualMachineImagePath(namespace, source.image, 'qcow2');
  return source.backingImage === undefined ? undefined : `${TEMPLATES_DIR}/${source.backingImage}`;
}

/** The image file of a StorageDomain disk without its extension, relative to the domain root. */
export function diskImageBase(d: DiskRef): string {
  return `images/${d.namespace}/${d.vmName}/${d.diskName}`;
}

/** The image file of a StorageDomain disk relative to the domain root (the layout the VM controller mounts). */
export function diskImagePath(d: DiskRef, format: 'qcow2' | 'raw'): string {
  return `${diskImageBase(d)}.${format}`;
}

/** Phases in which a launcher pod may hold the VM's disks open. */
const RUNNING_PHASES = new Set(['Scheduling', 'Starting', 'Running', 'Migrating', 'Paused', 'Stopping']);

export function vmIsRunning(vm: VirtualMachine): boolean {
  return RUNNING_PHASES.has(vm.status?.phase ?? '') || (vm.status?.launcherPod ?? '') !== '';
}

export function usesDomain(vm: VirtualMachine, domain: string): boolean {
  return vm.spec.template.disks.some((d) => d.storageDomain?.name === domain);
}

/** Every disk the VMs want on `domain`, keyed by namespace/vm/disk. */
export function wantedDisks(vms: readonly VirtualMachine[], domain: string): Map<string, WantedDisk> {
  const out = new Map<string, WantedDisk>();
  for (const vm of vms) {
    const namespace = vm.metadata.namespace ?? 'default';
    for (const disk of vm.spec.template.disks) {
      const source = disk.storageDomain;
      if (source?.name !== domain) continue;
      const ref = { namespace, vmName: vm.metadata.name, diskName: disk.name };
      out.set(diskKey(ref), {
        ...ref,
        image: diskImagePath(ref, source.format),
        format: source.format,
        size: source.size,
        sizeBytes: Math.ceil(parseQuantity(source.size) ?? 0),
        backing: diskBacking(namespace, source),
      });
    }
  }
  return out;
}

// Names, labels and the finalizer the StorageDomain controller puts on objects.
// Names are deterministic so that a stale cache makes a second create fail with
// AlreadyExists instead of creating a second object.
import { createHash } from 'node:crypto';
import type { ResourceType } from '../runtime/resource.ts';

/** Held on a StorageDomain while disks live on it. */
export const STORAGE_DOMAIN_FINALIZER = 'keyvirt.io/storage-domain-protection';

export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const STORAGE_JOB_COMPONENT = 'storage-job';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'keyvirt-operator';
/** On job pods: what the job does (`probe`, `create-disk`, `delete-disk`). */
export const LABEL_JOB_KIND = 'keyvirt.io/storage-job';
/** On job pods: the disk (namespace/vm/disk) a disk job is for. */
export const ANNOTATION_DISK = 'keyvirt.io/disk';
export const ANNOTATION_DOMAIN = 'keyvirt.io/storage-domain';

export const STORAGE_JOB_SELECTOR = `${LABEL_COMPONENT}=${STORAGE_JOB_COMPONENT},${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export const persistentVolumeType: ResourceType = {
  group: '',
  version: 'v1',
  plural: 'persistentvolumes',
  kind: 'PersistentVolume',
  namespaced: false,
};

export const storageClassType: ResourceType = {
  group: 'storage.k8s.io',
  version: 'v1',
  plural: 'storageclasses',
  kind: 'StorageClass',
  namespaced: false,
};

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 10);
}

/** A name within `max` characters: the readable prefix cut short, plus a hash of the whole. */
function boundedName(prefix: string, readable: string, max = 63): string {
  const full = `${prefix}${readable}`;
  if (full.length <= max) return full;
  const hash = shortHash(full);
  return `${full.slice(0, max - hash.length - 1).replace(/[-.]+$/, '')}-${hash}`;
}

/** The PersistentVolume and the claim (in the jobs' namespace) that back a domain. */
export function backingVolumeName(domain: string): string {
  return boundedName('keyvirt-sd-', domain, 253);
}

export function probePodName(domain: string): string {
  return boundedName('keyvirt-sd-probe-', domain);
}

export interface DiskRef {
  readonly namespace: string;
  readonly vmName: string;
  readonly diskName: string;
}

export function diskKey(d: DiskRef): string {
  return `${d.namespace}/${d.vmName}/${d.diskName}`;
}

/** The claim of a disk on a storageClass domain (in the VM's namespace); the VM mounts it. */
export function diskClaimName(disk: DiskRef): string {
  return boundedName('keyvirt-disk-', `${disk.vmName}-${disk.diskName}`, 253);
}

/** The job pod of one disk operation; the VM's UID is part of it, so that jobs of a deleted VM and of its namesake never share a pod. */
export function diskJobPodName(kind: 'create' | 'delete', domain: string, disk: DiskRef, vmUid?: string): string {
  return `keyvirt-disk-${kind}-${shortHash(`${domain}/${diskKey(disk)}${vmUid === undefined ? '' : `/${vmUid}`}`)}`;
}

// Where each VM disk comes from inside the launcher pod: a pod volume, what of it is
// mounted, and the image path. A disk on a StorageDomain mounts only its own image file,
// `images/<namespace>/<vm>/<disk>.<format>` (a subPath of the domain's volume), and, for a
// qcow2 overlay, its backing template `templates/<name>` read-only — never the rest of
// the domain, which holds every other tenant's disks. Both keep their domain-relative
// paths under one per-domain directory in the pod, so the overlay's relative backing
// file name (`../../../templates/<name>`) resolves inside the pod as on the domain. The
// disk is ready once the domain lists it in `status.disks` (the StorageDomain controller
// creates the image, then lists it). A PVC disk is the claim mounted, image `disk.img`
// (raw unless the template says otherwise), as KubeVirt lays out filesystem claims.
import type { Disk, StorageDomain, VirtualMachine } from '@keyvirt/crds';
import { storageDomainIsShared } from '@keyvirt/crds';
import { domainDiskState } from '../storage/disk-listing.ts';
import { diskBacking } from '../storage/domain-disks.ts';

/** Where StorageDomain files appear in the launcher pod: `<DOMAINS_DIR>/<domain>/<path on the domain>`. */
export const DOMAINS_DIR = '/var/run/keyvirt/domains';
/** Where PVC disks are mounted in the launcher pod: `<CLAIM_DISKS_DIR>/<disk>`. */
export const CLAIM_DISKS_DIR = '/var/run/keyvirt/disks';

/** A core/v1 volume source, as the launcher pod carries it. */
export type VolumeSource =
  | { hostPath: { path: string; type?: string } }
  | { nfs: { server: string; path: string; readOnly?: boolean } }
  | { persistentVolumeClaim: { claimName: string; readOnly?: boolean } };

/** One mount of a disk's volume: the whole volume, or a file or directory of it (subPath). */
export interface DiskMount {
  readonly subPath?: string | undefined;
  readonly mountPath: string;
  readonly readOnly: boolean;
}

export interface ResolvedDisk {
  readonly name: string;
  readonly source: VolumeSource;
  /** What of the volume the launcher container mounts (the image, and a backing template read-only). */
  readonly mounts: readonly DiskMount[];
  /** The image file inside the launcher pod. */
  readonly path: string;
  readonly format: 'qcow2' | 'raw';
  readonly readOnly: boolean;
  /** The node the disk pins the VM to (a local domain on one node). */
  readonly nodeName?: string | undefined;
  /** Why the VM cannot live-migrate because of this disk, when it cannot. */
  readonly notMigratableReason?: string | undefined;
}

/** A disk the cluster cannot provide (yet): reported as a condition, nothing is started. */
export interface DiskProblem {
  readonly disk: string;
  /** CamelCase condition reason, e.g. StorageDomainNotFound. */
  readonly reason: string;
  readonly message: string;
  /** True when waiting may fix it without a change to the VM (image being created). */
  readonly transient: boolean;
}

export type DiskResolution = { ok: true; disks: ResolvedDisk[] } | { ok: false; problems: DiskProblem[] };

/** What disk resolution reads: the cached StorageDomains and the VM namespace's claims. */
export interface DiskLookup {
  storageDomain(name: string): StorageDomain | undefined;
  claim(namespace: string, name: string): Promise<{ accessModes: readonly string[]; bound: boolean } | undefined>;
  /** Another VM (namespace/name) that holds the claim ahead of `vm` (claim-sharing.ts), if any. */
  claimHolder?(vm: VirtualMachine, claimName: string): string | undefined;
}

/** The image file of a StorageDomain disk, relative to the domain root. */
export function storageDomainImagePath(vm: { namespace: string; name: string }, disk: string, format: 'qcow2' | 'raw'): string {
  return `images/${vm.namespace}/${vm.name}/${disk}.${format}`;
}

function domainVolume(sd: StorageDomain, namespace: string): VolumeSource | string {
  const spec = sd.spec;
  switch (spec.type) {
    case 'local':
      return spec.local === undefined ? 'has no local connection' : { hostPath: { path: spec.local.path, type: 'Directory' } };
    case 'posix':
      // The shared file system is mounted at this path on every node; Directory, so a node without it fails instead of using an empty directory.
      return spec.posix === undefined ? 'has no posix connection' : { hostPath: { path: spec.posix.path, type: 'Directory' } };
    case 'nfs':
      return spec.nfs === undefined ? 'has no nfs connection' : { nfs: { server: spec.nfs.server, path: spec.nfs.path } };
    case 'pvc': {
      const pvc = spec.pvc;
      if (pvc === undefined) return 'has no pvc connection';
      if (pvc.namespace !== undefined && pvc.namespace !== namespace) {
        return `uses claim ${pvc.namespace}/${pvc.claimName}, which a pod in namespace ${namespace} cannot mount`;
      }
      return { persistentVolumeClaim: { claimName: pvc.claimName } };
    }
    default:
      return `is of type ${spec.type}, which launcher pods cannot mount directly yet`;
  }
}

/** The VM's image directory on a domain: `images/<namespace>/<vm>`. */
export function storageDomainImageDir(vm: { namespace: string; name: string }): string {
  return `images/${vm.namespace}/${vm.name}`;
}

/** The lease directory of an HA VM on its lease domain: `leases/<namespace>/<vm>` (holds the file `lease`). */
export function leaseDirPath(vm: { namespace: string; name: string }): string {
  return `leases/${vm.namespace}/${vm.name}`;
}

/** Where an HA VM's storage lease lives: a shared posix StorageDomain (ADR 0064). */
export interface LeaseDomain {
  readonly domain: string;
  readonly source: VolumeSource;
  /** `leases/<namespace>/<vm>`, relative to the domain root. */
  readonly leaseDir: string;
}

/**
 * The lease domain of an HA VM: the domain of its first StorageDomain disk, which must be
 * of type posix (shared, mounted at the same path on every node); otherwise why not.
 */
export function leaseDomainOf(vm: VirtualMachine, lookup: Pick<DiskLookup, 'storageDomain'>): LeaseDomain | { problem: string } {
  const first = vm.spec.template.disks.find((d) => d.storageDomain !== undefined)?.storageDomain;
  if (first === undefined) return { problem: 'the VM has no disk on a StorageDomain to keep its storage lease on' };
  const sd = lookup.storageDomain(first.name);
  if (sd === undefined) return { problem: `StorageDomain ${first.name} does not exist` };
  if (sd.spec.type !== 'posix' || sd.spec.posix === undefined) {
    return { problem: `StorageDomain ${first.name} is of type ${sd.spec.type}; the storage lease needs a shared posix domain` };
  }
  const namespace = vm.metadata.namespace ?? 'default';
  return { domain: first.name, source: { hostPath: { path: sd.spec.posix.path, type: 'Directory' } }, leaseDir: leaseDirPath({ namespace, name: vm.metadata.name }) };
}

/** How disks are mounted: an HA VM's images on its lease domain as their directory (the launcher renames files in it on a takeover). */
export interface ResolveOptions {
  readonly leaseDomain?: string | undefined;
}

function resolveDomainDisk(vm: VirtualMachine, disk: Disk, lookup: DiskLookup, options: ResolveOptions = {}): ResolvedDisk | DiskProblem {
  const source = disk.storageDomain;
  if (source === undefined) throw new Error('not a storage domain disk');
  const namespace = vm.metadata.namespace ?? 'default';
  const sd = lookup.storageDomain(source.name);
  if (sd === undefined) {
    return { disk: disk.name, reason: 'StorageDomainNotFound', message: `disk ${disk.name}: StorageDomain ${source.name} does not exist`, transient: false };
  }
  const phase = sd.status?.phase;
  if (phase !== 'Active' && phase !== 'PreparingForMaintenance') {
    return {
      disk: disk.name,
      reason: 'StorageDomainNotActive',
      message: `disk ${disk.name}: StorageDomain ${source.name} is ${phase ?? 'not yet active'}`,
      transient: true,
    };
  }
  const volume = domainVolume(sd, namespace);
  if (typeof volume === 'string') {
    return { disk: disk.name, reason: 'StorageDomainUnsupported', message: `disk ${disk.name}: StorageDomain ${source.name} ${volume}`, transient: false };
  }
  const listing = domainDiskState(sd, { namespace, vmName: vm.metadata.name, vmUid: vm.metadata.uid, diskName: disk.name });
  if (listing.state === 'refused') return { disk: disk.name, reason: listing.reason, message: listing.message, transient: true };
  if (listing.state === 'pending') return { disk: disk.name, reason: 'DiskNotReady', message: listing.message, transient: true };
  const shared = storageDomainIsShared(sd.spec);
  const why = sd.spec.type === 'local' ? 'a directory on one node' : 'which one node at a time can mount';
  const image = storageDomainImagePath({ namespace, name: vm.metadata.name }, disk.name, source.format);
  const inPod = (domainPath: string): string => `${DOMAINS_DIR}/${source.name}/${domainPath}`;
  const imageDir = storageDomainImageDir({ namespace, name: vm.metadata.name });
  const mounts: DiskMount[] =
    options.leaseDomain === source.name
      ? [{ subPath: imageDir, mountPath: inPod(imageDir), readOnly: false }]
      : [{ subPath: image, mountPath: inPod(image), readOnly: disk.readOnly }];
  // A raw disk is a full copy of its template; only a qcow2 overlay reads it at run time.
  const template = diskBacking(namespace, source);
  if (template !== undefined && source.format === 'qcow2') {
    mounts.push({ subPath: template, mountPath: inPod(template), readOnly: true });
  }
  return {
    name: disk.name,
    source: volume,
    mounts,
    path: inPod(image),
    format: source.format,
    readOnly: disk.readOnly,
    nodeName: sd.spec.type === 'local' ? sd.spec.local?.nodeName : undefined,
    notMigratableReason: shared ? undefined : `disk ${disk.name} is on StorageDomain ${source.name} of type ${sd.spec.type}, ${why}`,
  };
}

async function resolveClaimDisk(vm: VirtualMachine, disk: Disk, lookup: DiskLookup): Promise<ResolvedDisk | DiskProblem> {
  const claimName = disk.persistentVolumeClaim?.claimName;
  if (claimName === undefined) throw new Error('not a claim disk');
  const namespace = vm.metadata.namespace ?? 'default';
  const claim = await lookup.claim(namespace, claimName);
  if (claim === undefined) {
    return { disk: disk.name, reason: 'PersistentVolumeClaimNotFound', message: `disk ${disk.name}: PersistentVolumeClaim ${namespace}/${claimName} does not exist`, transient: false };
  }
  const holder = lookup.claimHolder?.(vm, claimName);
  if (holder !== undefined) {
    return { disk: disk.name, reason: 'ClaimInUse', message: `disk ${disk.name}: PersistentVolumeClaim ${namespace}/${claimName} is used by VirtualMachine ${holder}`, transient: false };
  }
  const rwx = claim.accessModes.includes('ReadWriteMany');
  return {
    name: disk.name,
    source: { persistentVolumeClaim: { claimName, ...(disk.readOnly ? { readOnly: true } : {}) } },
    mounts: [{ mountPath: `${CLAIM_DISKS_DIR}/${disk.name}`, readOnly: disk.readOnly }],
    path: `${CLAIM_DISKS_DIR}/${disk.name}/disk.img`,
    format: 'raw',
    readOnly: disk.readOnly,
    notMigratableReason: rwx ? undefined : `disk ${disk.name} uses PersistentVolumeClaim ${claimName}, which is not ReadWriteMany`,
  };
}

/** Resolves every disk of the VM, or lists every disk that cannot be provided. */
export async function resolveDisks(vm: VirtualMachine, lookup: DiskLookup, options: ResolveOptions = {}): Promise<DiskResolution> {
  const disks: ResolvedDisk[] = [];
  const problems: DiskProblem[] = [];
  for (const disk of vm.spec.template.disks) {
    const resolved = disk.storageDomain !== undefined ? resolveDomainDisk(vm, disk, lookup, options) : await resolveClaimDisk(vm, disk, lookup);
    if ('reason' in resolved) problems.push(resolved);
    else disks.push(resolved);
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, disks };
}

// The Kubernetes volume behind each StorageDomain type, rendered as plain objects:
// `local` a hostPath PersistentVolume pinned to its node, `posix` a hostPath
// PersistentVolume every node mounts (the shared file system is at the same path on
// each, ReadWriteMany), `nfs`/`iscsi`/`fc` a
// PersistentVolume with the native source, each pre-bound to a claim in the
// namespace where storage jobs run; `pvc` uses an existing claim; `storageClass`
// provisions one claim per disk. ReadWriteMany where the type allows several
// nodes to mount it; otherwise the reason VMs on it cannot live-migrate.
import type { StorageDomain, StorageDomainType } from '@keyvirt/crds';
import { backingVolumeName } from './names.ts';

export interface OwnerRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

/** Where storage jobs mount the domain: a claim in `namespace`, plus what nodes can reach it. */
export interface BackingVolumePlan {
  /** The PersistentVolume to create, if the type needs one. */
  readonly persistentVolume?: Record<string, unknown> | undefined;
  /** The claim to create, if the controller owns it. */
  readonly claim?: Record<string, unknown> | undefined;
  /** The claim jobs mount (created above or the user's). Absent for storageClass domains. */
  readonly claimRef?: { readonly namespace: string; readonly name: string } | undefined;
  readonly accessMode: 'ReadWriteMany' | 'ReadWriteOnce';
  /** The node every job and VM must run on (local domains with a node). */
  readonly nodeName?: string | undefined;
  /** Why VMs with disks here cannot live-migrate, when they cannot. */
  readonly notMigratableReason?: string | undefined;
}

/** The nominal PV size: the real capacity is measured on a node and written to status. */
export const NOMINAL_VOLUME_SIZE = '1Pi';
const CLAIM_REQUEST = '1Mi';

/** The types whose domain gets a PersistentVolume of the operator's own. */
type PvType = 'local' | 'posix' | 'nfs' | 'iscsi' | 'fc';

export class BackingVolumeError extends Error {
  override readonly name = 'BackingVolumeError';
}

function volumeSource(sd: StorageDomain): Record<string, unknown> {
  const spec = sd.spec;
  switch (spec.type) {
    case 'local': {
      if (spec.local === undefined) throw new BackingVolumeError('type local needs spec.local');
      return { hostPath: { path: spec.local.path, type: 'DirectoryOrCreate' } };
    }
    case 'posix': {
      // Directory, not DirectoryOrCreate: a node without the shared mount must not get an empty local directory in its place.
      if (spec.posix === undefined) throw new BackingVolumeError('type posix needs spec.posix');
      return { hostPath: { path: spec.posix.path, type: 'Directory' } };
    }
    case 'nfs': {
      if (spec.nfs === undefined) throw new BackingVolumeError('type nfs needs spec.nfs');
      return { nfs: { server: spec.nfs.server, path: spec.nfs.path } };
    }
    case 'iscsi': {
      const c = spec.iscsi;
      if (c === undefined) throw new BackingVolumeError('type iscsi needs spec.iscsi');
      const portal = c.portal.includes(':') && !c.portal.endsWith(']') ? c.portal : `${c.portal}:3260`;
      return {
        iscsi: {
          targetPortal: portal,
          iqn: c.iqn,
          lun: c.lun,
          fsType: 'ext4',
          ...(c.chapSecretRef === undefined
            ? {}
            : {
                chapAuthSession: true,
                secretRef: { name: c.chapSecretRef.name, namespace: c.chapSecretRef.namespace },
              }),
        },
      };
    }
    case 'fc': {
      if (spec.fc === undefined) throw new BackingVolumeError('type fc needs spec.fc');
      return { fc: { targetWWNs: spec.fc.wwns.map((w) => w.replaceAll(':', '').toLowerCase()), lun: spec.fc.lun, fsType: 'ext4' } };
    }
    default:
      throw new BackingVolumeError(`type ${spec.type} has no PersistentVolume of its own`);
  }
}

const ACCESS: Readonly<Record<PvType, 'ReadWriteMany' | 'ReadWriteOnce'>> = {
  local: 'ReadWriteOnce',
  // The same cluster file system at the same path on every node.
  posix: 'ReadWriteMany',
  nfs: 'ReadWriteMany',
  // A filesystem on a LUN can be mounted by one node at a time.
  iscsi: 'ReadWriteOnce',
  fc: 'ReadWriteOnce',
};

function notMigratable(type: StorageDomainType, name: string, accessMode: string): string | undefined {
  if (accessMode === 'ReadWriteMany') return undefined;
  if (type === 'local') return `StorageDomain ${name} is a directory on one node (type local)`;
  return `StorageDomain ${name} (type ${type}) is mounted ${accessMode}: one node at a time`;
}

function mountOptions(sd: StorageDomain): string[] | undefined {
  const nfs = sd.spec.nfs;
  if (sd.spec.type !== 'nfs' || nfs === undefined) return undefined;
  const options = [...(nfs.version === undefined ? [] : [`nfsvers=${nfs.version}`]), ...(nfs.mountOptions ?? [])];
  return options.length === 0 ? undefined : options;
}

function pvBacked(sd: StorageDomain, type: PvType, jobsNamespace: string, owner: OwnerRef): BackingVolumePlan {
  const name = backingVolumeName(sd.metadata.name);
  const accessMode = ACCESS[type];
  const nodeName = type === 'local' ? sd.spec.local?.nodeName : undefined;
  const labels = { 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'keyvirt.io/storage-domain': sd.metadata.name.slice(0, 63) };
  const options = mountOptions(sd);
  const persistentVolume = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name, labels, ownerReferences: [owner] },
    spec: {
      capacity: { storage: NOMINAL_VOLUME_SIZE },
      accessModes: [accessMode],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '',
      volumeMode: 'Filesystem',
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: jobsNamespace, name },
      ...(options === undefined ? {} : { mountOptions: options }),
      ...(nodeName === undefined
        ? {}
        : {
            nodeAffinity: {
              required: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [nodeName] }] }],
              },
            },
          }),
      ...volumeSource(sd),
    },
  };
  const claim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: jobsNamespace, labels, ownerReferences: [owner] },
    spec: {
      accessModes: [accessMode],
      storageClassName: '',
      volumeMode: 'Filesystem',
      volumeName: name,
      resources: { requests: { storage: CLAIM_REQUEST } },
    },
  };
  return {
    persistentVolume,
    claim,
    claimRef: { namespace: jobsNamespace, name },
    accessMode,
    nodeName,
    notMigratableReason: notMigratable(type, sd.metadata.name, accessMode),
  };
}

/**
 * The backing volume of `sd`. `jobsNamespace` is the operator's namespace, where
 * storage jobs run and the controller's claims live; `owner` is the domain's
 * controller reference (cluster-scoped owners may own namespaced objects).
 */
export function planBackingVolume(sd: StorageDomain, jobsNamespace: string, owner: OwnerRef): BackingVolumePlan {
  const spec = sd.spec;
  switch (spec.type) {
    case 'local':
    case 'posix':
    case 'nfs':
    case 'iscsi':
    case 'fc':
      return pvBacked(sd, spec.type, jobsNamespace, owner);
    case 'pvc': {
      if (spec.pvc === undefined) throw new BackingVolumeError('type pvc needs spec.pvc');
      return {
        claimRef: { namespace: spec.pvc.namespace ?? jobsNamespace, name: spec.pvc.claimName },
        accessMode: 'ReadWriteMany',
      };
    }
    case 'storageClass': {
      const sc = spec.storageClass;
      if (sc === undefined) throw new BackingVolumeError('type storageClass needs spec.storageClass');
      return { accessMode: sc.accessMode, notMigratableReason: notMigratable('storageClass', sd.metadata.name, sc.accessMode) };
    }
  }
}

/** A claim a storageClass domain provisions for one disk (in the VM's namespace). */
export function perDiskClaim(
  sd: StorageDomain,
  disk: { namespace: string; claimName: string; sizeBytes: number },
  owner: OwnerRef,
): Record<string, unknown> {
  const sc = sd.spec.storageClass;
  if (sc === undefined) throw new BackingVolumeError('type storageClass needs spec.storageClass');
  // Room for qcow2 metadata and filesystem overhead on top of the virtual size.
  const requested = Math.ceil((disk.sizeBytes * 1.06 + 64 * 2 ** 20) / 2 ** 20);
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: disk.claimName,
      namespace: disk.namespace,
      labels: { 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'keyvirt.io/storage-domain': sd.metadata.name.slice(0, 63) },
      ownerReferences: [{ ...owner, controller: false }],
    },
    spec: {
      accessModes: [sc.accessMode],
      storageClassName: sc.name,
      volumeMode: sc.volumeMode,
      resources: { requests: { storage: `${requested}Mi` } },
    },
  };
}

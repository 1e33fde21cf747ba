// StorageDomain keyvirt.io/v1alpha1 (cluster-scoped): oVirt's storage domain, a place
// that holds VM disk images, reached over NFS, iSCSI, FC, a node-local path, a shared
// (POSIX) file system mounted on every node, an existing PVC, or volumes provisioned
// from a StorageClass.
import { z } from 'zod';
import { API_VERSION } from '../api-group.ts';
import { absolutePath, conditions, dnsSubdomain, int32, int64, ObjectMeta, requiredString } from '../fields.ts';
import { QUANTITY_PATTERN } from '../quantity.ts';
import { unless, withRules, type ValidationRule } from '../validation-rule.ts';

export const STORAGE_DOMAIN_TYPES = ['nfs', 'iscsi', 'fc', 'local', 'posix', 'pvc', 'storageClass'] as const;
export type StorageDomainType = (typeof STORAGE_DOMAIN_TYPES)[number];
/**
 * Types whose images several nodes can open at once (ReadWriteMany), so VMs on them can
 * live-migrate — a storageClass domain only with accessMode ReadWriteMany
 * (`storageDomainIsShared`). iscsi and fc carry a filesystem on a LUN, which one node
 * mounts at a time; local is one node's directory.
 */
export const SHARED_STORAGE_DOMAIN_TYPES: readonly StorageDomainType[] = ['nfs', 'posix', 'pvc', 'storageClass'];
/** File-based types: they can hold installation media (role iso). */
export const FILE_STORAGE_DOMAIN_TYPES: readonly StorageDomainType[] = ['nfs', 'local', 'posix', 'pvc', 'storageClass'];

export const STORAGE_DOMAIN_ROLES = ['data', 'iso'] as const;
export type StorageDomainRole = (typeof STORAGE_DOMAIN_ROLES)[number];

export const STORAGE_DOMAIN_PHASES = ['Pending', 'Activating', 'Active', 'PreparingForMaintenance', 'Maintenance', 'Inactive', 'Error'] as const;
export type StorageDomainPhase = (typeof STORAGE_DOMAIN_PHASES)[number];

export const STORAGE_DOMAIN_CONDITION_TYPES = ['Ready', 'Mounted', 'LowSpace', 'CriticalSpace'] as const;

export const NFS_VERSIONS = ['3', '4', '4.1', '4.2'] as const;

const HOST = /^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$/;

export const NfsConnection = z
  .object({
    server: requiredString('nfs.server').min(1).max(253).regex(HOST, { error: 'nfs.server must be a host name or an IP address' }).describe('The NFS server host name or IP address.'),
    path: absolutePath('nfs.path').describe('The exported directory, e.g. /exports/vmdata.'),
    version: z.enum(NFS_VERSIONS).optional().describe('The NFS protocol version (3, 4, 4.1 or 4.2); negotiated when absent.'),
    mountOptions: z.array(z.string().max(256)).max(32).optional().describe('Extra mount options, e.g. nconnect=4.'),
  })
  .describe('An NFS export (type nfs).');

export const IscsiConnection = z
  .object({
    portal: requiredString('iscsi.portal')
      .max(261)
      .regex(/^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$/, { error: 'iscsi.portal must be host or host:port' })
      .describe('The target portal, host or host:port (port 3260 when absent).'),
    iqn: requiredString('iscsi.iqn')
      .max(223)
      .regex(/^(iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:.+)?|eui\.[0-9A-Fa-f]{16})$/, { error: 'iscsi.iqn must be an iSCSI name such as iqn.2024-01.io.example:storage' })
      .describe('The target IQN, e.g. iqn.2024-01.io.example:vmdata.'),
    lun: int32(0, 16383).describe('The LUN number (0-16383).'),
    chapSecretRef: z
      .object({ name: dnsSubdomain('chapSecretRef.name').describe('The Secret name.'), namespace: z.string().max(63).optional().describe('The Secret namespace; the operator namespace when absent.') })
      .optional()
      .describe('A Secret with CHAP credentials (keys username and password).'),
  })
  .describe('An iSCSI LUN (type iscsi).');

const WWN = /^([0-9A-Fa-f]{16}|([0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2})$/;

export const FcConnection = z
  .object({
    wwns: z
      .array(z.string().regex(WWN, { error: 'a WWN must be 16 hex digits, e.g. 50060e801049cfd1' }), { error: (i) => (i.input === undefined ? 'fc.wwns is required' : undefined) })
      .min(1, { error: 'fc.wwns needs at least one target WWN' })
      .max(16)
      .describe('Target world-wide names (16 hex digits each).'),
    lun: int32(0, 16383).describe('The LUN number (0-16383).'),
  })
  .describe('A Fibre Channel LUN (type fc).');

export const LocalConnection = z
  .object({
    path: absolutePath('local.path').describe('A directory on the node that holds the images.'),
    nodeName: dnsSubdomain('local.nodeName').optional().describe('The node the directory lives on; VMs with disks here run only on that node and cannot live-migrate.'),
  })
  .describe('A directory on a node (type local).');

export const PosixConnection = withRules(
  z
    .object({
      path: absolutePath('posix.path').describe(
        'Where the shared file system (CephFS, GlusterFS, an NFS export the nodes mount themselves …) is mounted, at the same path on every node that may run VMs; the images live below it.',
      ),
    })
    .describe('A POSIX-compliant shared file system, already mounted at the same path on every node (type posix, oVirt\'s POSIX file system domain). Declaring one states that every node sees the same files there: VMs on it can live-migrate.'),
  [
    {
      cel: "self.path != '/' && !self.path.matches('(^|/)[.][.]?(/|$)')",
      message: 'posix.path must be a directory below /, without . or .. segments',
      fieldPath: '.path',
      violations: (c) => unless(c.path !== '/' && !/(^|\/)\.\.?(\/|$)/.test(c.path), ['path']),
    },
  ],
);

export const PvcConnection = z
  .object({
    claimName: dnsSubdomain('pvc.claimName').describe('An existing ReadWriteMany PersistentVolumeClaim that holds the images.'),
    namespace: z.string().max(63).optional().describe('The claim namespace; the operator namespace when absent.'),
  })
  .describe('An existing PersistentVolumeClaim (type pvc).');

export const StorageClassConnection = z
  .object({
    name: dnsSubdomain('storageClass.name').describe('The StorageClass each disk gets its own volume from.'),
    accessMode: z.enum(['ReadWriteMany', 'ReadWriteOnce']).default('ReadWriteMany').describe('ReadWriteMany (the default; live migration) or ReadWriteOnce.'),
    volumeMode: z.enum(['Filesystem', 'Block']).default('Filesystem').describe('Filesystem (the default) or Block.'),
  })
  .describe('A StorageClass that provisions one volume per disk (type storageClass).');

export const StorageThresholds = z
  .object({
    warningPercent: int32(1, 99).default(80).describe('Used space (percent, 1-99) at which the LowSpace condition turns True.'),
    criticalFreeGiB: int32(0, 1048576).default(5).describe('Free space (GiB) below which no new disk is created (critical space blocker).'),
  })
  .describe('Capacity thresholds, as oVirt defines them.');

const CONNECTION_HINTS: Readonly<Record<StorageDomainType, string>> = {
  nfs: 'server and path',
  iscsi: 'portal, iqn and lun',
  fc: 'wwns and lun',
  local: 'path',
  posix: 'path',
  pvc: 'claimName',
  storageClass: 'name',
};

type SpecShape = { type: StorageDomainType; role: StorageDomainRole } & Partial<Record<StorageDomainType, object>>;

function connectionRules(): ValidationRule<SpecShape>[] {
  return STORAGE_DOMAIN_TYPES.flatMap((type): ValidationRule<SpecShape>[] => [
    {
      cel: `self.type != '${type}' || has(self.${type})`,
      message: `type ${type} needs spec.${type} with ${CONNECTION_HINTS[type]}`,
      fieldPath: `.${type}`,
      reason: 'FieldValueRequired',
      violations: (s) => unless(s.type !== type || s[type] !== undefined, [type]),
    },
    {
      cel: `!has(self.${type}) || self.type == '${type}'`,
      message: `spec.${type} is only allowed when type is ${type}`,
      fieldPath: `.${type}`,
      reason: 'FieldValueForbidden',
      violations: (s) => unless(s[type] === undefined || s.type === type, [type]),
    },
  ]);
}

export const StorageDomainSpec = withRules(
  z
    .object({
      type: withRules(z.enum(STORAGE_DOMAIN_TYPES, { error: 'type must be one of nfs, iscsi, fc, local, posix, pvc, storageClass' }), [
        { cel: 'self == oldSelf', message: 'type cannot be changed', transition: true, violations: () => [] },
      ]).describe('How the domain is reached: nfs, iscsi, fc, local, posix, pvc or storageClass; the block of the same name holds the connection. Cannot be changed.'),
      nfs: NfsConnection.optional(),
      iscsi: IscsiConnection.optional(),
      fc: FcConnection.optional(),
      local: LocalConnection.optional(),
      posix: PosixConnection.optional(),
      pvc: PvcConnection.optional(),
      storageClass: StorageClassConnection.optional(),
      role: z.enum(STORAGE_DOMAIN_ROLES, { error: 'role must be data or iso' }).default('data').describe('data (VM disks, the default) or iso (installation media, read-only).'),
      thresholds: StorageThresholds.prefault({ warningPercent: 80, criticalFreeGiB: 5 }),
      maintenance: z.boolean().default(false).describe('Move the domain to Maintenance: no new disks; it reaches Maintenance once no running VM uses it.'),
      overcommitPercent: int32(100, 10000)
        .default(200)
        .describe('How far the virtual sizes of the thin disks on the domain may exceed its capacity, in percent (100-10000, default 200): a disk that would take the sum past capacity x overcommitPercent / 100 is not created.'),
    })
    .describe('The desired state of a StorageDomain.'),
  [
    ...connectionRules(),
    {
      cel: `self.role != 'iso' || self.type in [${FILE_STORAGE_DOMAIN_TYPES.map((t) => `'${t}'`).join(', ')}]`,
      message: 'an iso domain must be file-based: type nfs, local, posix, pvc or storageClass',
      fieldPath: '.role',
      violations: (s) => unless(s.role !== 'iso' || FILE_STORAGE_DOMAIN_TYPES.includes(s.type), ['role']),
    },
  ],
);
export type StorageDomainSpec = z.infer<typeof StorageDomainSpec>;
export type StorageDomainSpecInput = z.input<typeof StorageDomainSpec>;

/** Whether several nodes can open the domain's images at once, so that VMs on it can live-migrate. */
export function storageDomainIsShared(spec: Pick<StorageDomainSpec, 'type' | 'storageClass'>): boolean {
  if (!SHARED_STORAGE_DOMAIN_TYPES.includes(spec.type)) return false;
  return spec.type !== 'storageClass' || spec.storageClass?.accessMode !== 'ReadWriteOnce';
}

const Quantity = z.string().regex(new RegExp(QUANTITY_PATTERN));

export const StorageDomainStatus = z
  .object({
    phase: z.enum(STORAGE_DOMAIN_PHASES).optional().describe('Pending, Activating, Active, PreparingForMaintenance, Maintenance, Inactive or Error.'),
    conditions: conditions(),
    capacity: Quantity.optional().describe('The total size of the domain, e.g. 500Gi.'),
    used: Quantity.optional().describe('The space in use.'),
    free: Quantity.optional().describe('The space left.'),
    diskCount: int32(0, 2147483647).optional().describe('How many VM disks live on the domain.'),
    vmCount: int32(0, 2147483647).optional().describe('How many VMs use the domain.'),
    disks: z
      .array(
        z.object({
          namespace: z.string().describe('The VM namespace.'),
          vmName: z.string().describe('The VM name.'),
          diskName: z.string().describe('The disk name within the VM.'),
          size: Quantity.optional().describe('The virtual size of the disk.'),
          vmUid: z.string().max(128).optional().describe('The UID of the VM the disk was created for: it is deleted only once that VM is gone.'),
        }),
      )
      .max(10000)
      .optional()
      .describe('The disks attached from this domain.'),
    refusedDisks: z
      .array(
        z.object({
          namespace: z.string().describe('The VM namespace.'),
          vmName: z.string().describe('The VM name.'),
          diskName: z.string().describe('The disk name within the VM.'),
          reason: z.string().max(128).describe('Why the disk is not created, in CamelCase, e.g. Overcommitted.'),
          message: z.string().max(1024).describe('Why the disk is not created, for people.'),
        }),
      )
      .max(1000)
      .optional()
      .describe('Disks VMs want on this domain that the operator does not create, and why.'),
    observedGeneration: int64(0).optional().describe('The .metadata.generation this status reflects.'),
  })
  .describe('The observed state of a StorageDomain, written by the operator only.');
export type StorageDomainStatus = z.infer<typeof StorageDomainStatus>;

export const StorageDomain = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('StorageDomain'),
    metadata: ObjectMeta,
    spec: StorageDomainSpec,
    status: StorageDomainStatus.optional(),
  })
  .describe('A storage domain (cluster-scoped): where VM disk images live and how nodes reach them.');
export type StorageDomain = z.infer<typeof StorageDomain>;
export type StorageDomainInput = z.input<typeof StorageDomain>;

// Every KeyVirt kind with the metadata its CRD needs: names, scope, printer columns
// and the zod schema it is generated from.
import type { z } from 'zod';
import { GROUP, PLURALS } from './api-group.ts';
import { MigrationPolicy } from './migrationpolicy/v1alpha1.ts';
import { StorageDomain } from './storagedomain/v1alpha1.ts';
import { VirtualMachine } from './virtualmachine/v1alpha1.ts';
import { VirtualMachineImage } from './virtualmachineimage/v1alpha1.ts';
import { VirtualMachineMigration } from './virtualmachinemigration/v1alpha1.ts';

export const KINDS = ['VirtualMachine', 'VirtualMachineMigration', 'StorageDomain', 'MigrationPolicy', 'VirtualMachineImage'] as const;
export type KeyVirtKind = (typeof KINDS)[number];

export type Scope = 'Namespaced' | 'Cluster';

export interface PrinterColumn {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  readonly jsonPath: string;
  readonly description: string;
  /** 0 shows in `kubectl get`, 1 only with `-o wide`. */
  readonly priority?: number;
}

export interface KindInfo {
  readonly kind: KeyVirtKind;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly scope: Scope;
  /** The CRD name, `<plural>.<group>`. */
  readonly crdName: string;
  readonly printerColumns: readonly PrinterColumn[];
  readonly schema: z.ZodType;
}

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since the object was created.' };
const phase: PrinterColumn = { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'The current phase.' };

interface KindNames {
  readonly plural: string;
  readonly shortName: string;
  readonly scope: Scope;
}

function info(kind: KeyVirtKind, { plural, shortName, scope }: KindNames, schema: z.ZodType, columns: readonly PrinterColumn[]): KindInfo {
  return {
    kind,
    listKind: `${kind}List`,
    plural,
    singular: kind.toLowerCase(),
    shortNames: [shortName],
    scope,
    crdName: `${plural}.${GROUP}`,
    printerColumns: [...columns, age],
    schema,
  };
}

const KIND_INFO: Readonly<Record<KeyVirtKind, KindInfo>> = {
  VirtualMachine: info('VirtualMachine', { plural: PLURALS.VirtualMachine, shortName: 'vm', scope: 'Namespaced' }, VirtualMachine, [
    phase,
    { name: 'Ready', type: 'boolean', jsonPath: '.status.ready', description: 'The VM runs and is ready.' },
    { name: 'Node', type: 'string', jsonPath: '.status.nodeName', description: 'The node that runs the VM.' },
    { name: 'IP', type: 'string', jsonPath: '.status.interfaces[0].ipAddress', description: 'The IP address of the first interface.' },
    { name: 'Run-Strategy', type: 'string', jsonPath: '.spec.runStrategy', description: 'The run strategy.', priority: 1 },
    { name: 'Accelerator', type: 'string', jsonPath: '.status.accelerator', description: 'kvm or tcg.', priority: 1 },
    { name: 'Launcher', type: 'string', jsonPath: '.status.launcherPod', description: 'The launcher pod.', priority: 1 },
  ]),
  VirtualMachineMigration: info('VirtualMachineMigration', { plural: PLURALS.VirtualMachineMigration, shortName: 'vmm', scope: 'Namespaced' }, VirtualMachineMigration, [
    phase,
    { name: 'VM', type: 'string', jsonPath: '.spec.vmName', description: 'The VM being migrated.' },
    { name: 'Source', type: 'string', jsonPath: '.status.sourceNode', description: 'The source node.' },
    { name: 'Target', type: 'string', jsonPath: '.status.targetNode', description: 'The target node.' },
    { name: 'Progress', type: 'integer', jsonPath: '.status.progress.percent', description: 'Percent of the guest memory copied.' },
    { name: 'Downtime-Ms', type: 'integer', jsonPath: '.status.downtimeMs', description: 'The guest pause QEMU measured, in milliseconds.' },
    { name: 'Mode', type: 'string', jsonPath: '.status.mode', description: 'PreCopy or PostCopy.', priority: 1 },
  ]),
  StorageDomain: info('StorageDomain', { plural: PLURALS.StorageDomain, shortName: 'sd', scope: 'Cluster' }, StorageDomain, [
    { name: 'Type', type: 'string', jsonPath: '.spec.type', description: 'How the domain is reached.' },
    { name: 'Role', type: 'string', jsonPath: '.spec.role', description: 'data or iso.' },
    phase,
    { name: 'Capacity', type: 'string', jsonPath: '.status.capacity', description: 'The total size.' },
    { name: 'Free', type: 'string', jsonPath: '.status.free', description: 'The space left.' },
    { name: 'Disks', type: 'integer', jsonPath: '.status.diskCount', description: 'VM disks on the domain.', priority: 1 },
  ]),
  MigrationPolicy: info('MigrationPolicy', { plural: PLURALS.MigrationPolicy, shortName: 'mp', scope: 'Cluster' }, MigrationPolicy, [
    { name: 'Bandwidth', type: 'string', jsonPath: '.spec.bandwidthPerMigration', description: 'Bytes per second per migration.' },
    { name: 'Auto-Converge', type: 'boolean', jsonPath: '.spec.allowAutoConverge', description: 'Auto-converge allowed.' },
    { name: 'Post-Copy', type: 'boolean', jsonPath: '.spec.allowPostCopy', description: 'Post-copy allowed.' },
    { name: 'VMs', type: 'integer', jsonPath: '.status.matchedVirtualMachines', description: 'VMs the policy applies to.' },
  ]),
  VirtualMachineImage: info('VirtualMachineImage', { plural: PLURALS.VirtualMachineImage, shortName: 'vmimage', scope: 'Namespaced' }, VirtualMachineImage, [
    phase,
    { name: 'Progress', type: 'string', jsonPath: '.status.progress.display', description: 'How far the import is, with its rate.' },
    { name: 'Size', type: 'string', jsonPath: '.status.size', description: 'The disk size the guest sees.' },
    { name: 'Format', type: 'string', jsonPath: '.status.format', description: 'The stored format.' },
    { name: 'Domain', type: 'string', jsonPath: '.spec.storageDomain', description: 'The StorageDomain holding the image.' },
    { name: 'Reason', type: 'string', jsonPath: '.status.reason', description: 'Why the import failed.', priority: 1 },
    { name: 'Source-Format', type: 'string', jsonPath: '.status.sourceFormat', description: 'The format detected in the source.', priority: 1 },
  ]),
};

/** The CRD metadata of a kind: plural, short names, scope, printer columns, schema. */
export function kindInfo(kind: KeyVirtKind): KindInfo {
  return KIND_INFO[kind];
}

/** True when `kind` names a KeyVirt kind. */
export function isKeyVirtKind(kind: unknown): kind is KeyVirtKind {
  return typeof kind === 'string' && (KINDS as readonly string[]).includes(kind);
}

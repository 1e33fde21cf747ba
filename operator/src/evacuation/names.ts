// Names, labels and annotations of node evacuation. An evacuation migration is an
// ordinary VirtualMachineMigration whose name is fixed by the VM, the node and the
// attempt: a stale cache re-creating it meets AlreadyExists, never a second migration.
import { createHash } from 'node:crypto';
import { virtualMachineMigrationType } from '../vm/names.ts';

/** Evacuation migrations are VirtualMachineMigrations like any other. */
export const migrationType = virtualMachineMigrationType;

/** The taint that asks for an evacuation without cordoning (any effect). */
export const DRAIN_TAINT = 'keyvirt.io/drain';
/** On evacuation migrations: the node being evacuated (its name, hashed when longer than a label value may be). */
export const LABEL_EVACUATION = 'keyvirt.io/evacuation';
/** On evacuation migrations: the node's full name. */
export const ANNOTATION_EVACUATION_NODE = 'keyvirt.io/evacuation-node';
/** On evacuation migrations: 1 for the first attempt for this VM and node, then 2, 3 … */
export const ANNOTATION_EVACUATION_ATTEMPT = 'keyvirt.io/evacuation-attempt';

function shortHash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** The label value naming a node: the name itself when it fits in 63 characters. */
export function evacuationLabelValue(nodeName: string): string {
  return nodeName.length <= 63 ? nodeName : `node-${shortHash(nodeName, 16)}`;
}

/** `evacuate-<vm>-<8 hex of sha256(node)>-<attempt>`: at most 9 + 63 + 9 + 11 characters. */
export function evacuationMigrationName(vmName: string, nodeName: string, attempt: number): string {
  return `evacuate-${vmName}-${shortHash(nodeName, 8)}-${String(attempt)}`;
}

// The API group and version every KeyVirt kind lives in.

export const GROUP = 'keyvirt.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
/** The `kubectl get keyvirt` category every KeyVirt kind belongs to. */
export const CATEGORY = 'keyvirt';

/** The resource (plural) name of each kind, as in /apis/keyvirt.io/v1alpha1/<plural>. */
export const PLURALS = {
  VirtualMachine: 'virtualmachines',
  VirtualMachineMigration: 'virtualmachinemigrations',
  StorageDomain: 'storagedomains',
  MigrationPolicy: 'migrationpolicies',
  VirtualMachineImage: 'virtualmachineimages',
} as const;

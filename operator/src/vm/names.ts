// Names, labels, annotations and the finalizer the VM controller puts on objects.
// Deterministic names: a second reconcile with a stale cache tries to create the same
// pod again and gets AlreadyExists instead of a second launcher.
import { createHash } from 'node:crypto';
import { GROUP, VERSION } from '@keyvirt/crds';
import type { ResourceType } from '../runtime/resource.ts';

export const virtualMachineType: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'virtualmachines',
  kind: 'VirtualMachine',
  namespaced: true,
};

export const virtualMachineMigrationType: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'virtualmachinemigrations',
  kind: 'VirtualMachineMigration',
  namespaced: true,
};

export const storageDomainType: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'storagedomains',
  kind: 'StorageDomain',
  namespaced: false,
};

/** Set on every VM: the guest is stopped gracefully before the VM object goes. */
export const VM_FINALIZER = 'keyvirt.io/graceful-stop';

/** Labels on launcher pods (and their Secrets). */
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const LAUNCHER_COMPONENT = 'launcher';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'keyvirt-operator';
export const LABEL_VM = 'keyvirt.io/vm';
export const LABEL_VM_UID = 'keyvirt.io/vm-uid';
/**
 * On every launcher pod: its VM's evictionStrategy. The launcher eviction webhook refuses
 * to evict a running pod labelled LiveMigrate (ADR 0121); the VM controller keeps it equal
 * to the spec.
 */
export const LABEL_EVICTION_STRATEGY = 'keyvirt.io/eviction-strategy';
/**
 * On a migration target pod (and its Secret) until the migration succeeds: the UID of
 * its VirtualMachineMigration. The VM controller never treats such a pod as the VM's
 * launcher, and never starts a launcher while one of them is active (ADR 0081).
 */
export const LABEL_MIGRATION_TARGET = 'keyvirt.io/migration-target';

/** The label selector of every launcher pod. */
export const LAUNCHER_POD_SELECTOR = `${LABEL_COMPONENT}=${LAUNCHER_COMPONENT},${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/**
 * A request written by a person or a tool: `start`, `stop` or `restart`. The operator
 * acts on it and removes it (see docs/adr/0061-vm-run-strategy-and-requests.md).
 */
export const ANNOTATION_REQUEST = 'keyvirt.io/request';
/** Operator-owned: whether a Manual or Once VM should run (`Running` / `Stopped`). */
export const ANNOTATION_DESIRED_STATE = 'keyvirt.io/desired-state';
/** Operator-owned: the UID of the launcher pod a restart request replaces. */
export const ANNOTATION_RESTART_OF = 'keyvirt.io/restart-of';
/** On the launcher pod: the hash of the launcher config it was started with. */
export const ANNOTATION_CONFIG_HASH = 'keyvirt.io/launcher-config-hash';
/** On the launcher pod: the memory it requests beyond the guest RAM, in bytes. */
export const ANNOTATION_MEMORY_OVERHEAD = 'keyvirt.io/memory-overhead-bytes';

/** The launcher pod the VM controller starts; after a migration the VM runs in a target pod instead. */
export function launcherPodName(vmName: string): string {
  return `launcher-${vmName}`;
}

/**
 * The target pod of one migration: `launcher-<vm>-<first 10 hex of sha256(migration uid)>`.
 * Deterministic, so a retry or a stale cache meets AlreadyExists instead of a second target.
 */
export function migrationTargetPodName(vmName: string, migrationUid: string): string {
  return `launcher-${vmName}-${createHash('sha256').update(migrationUid).digest('hex').slice(0, 10)}`;
}

export function launcherSecretName(vmName: string): string {
  return `launcher-${vmName}`;
}

/**
 * On an HA replacement launcher pod (and its Secret) until it is promoted: the UID of
 * the launcher pod it replaces (ADR 0064). Like the migration-target label, the VM
 * controller never treats such a pod as the VM's launcher while the label is on it.
 */
export const LABEL_HA_REPLACEMENT = 'keyvirt.io/ha-replacement';
/**
 * On a launcher pod that keeps a storage lease: the StorageDomain holding it. An HA VM
 * whose pod lacks it (HA enabled while it ran) has a launcher that holds no lease: it
 * is not restarted elsewhere on silence alone, since nothing would stop its QEMU.
 */
export const ANNOTATION_STORAGE_LEASE = 'keyvirt.io/storage-lease';
/** On a promoted HA replacement: the UID of the launcher pod it replaced (for the record). */
export const ANNOTATION_HA_REPLACED = 'keyvirt.io/ha-replaced';
/** HA-controller-owned, on the VM: JSON list of the times (ms since the epoch) of its HA restarts, bounded. */
export const ANNOTATION_HA_RESTARTS = 'keyvirt.io/ha-restarts';
/** On a Node, set by an administrator: the node is fenced (powered off or cut from storage); its VMs may start elsewhere at once. */
export const ANNOTATION_NODE_FENCED = 'keyvirt.io/node-fenced';
/** The taint Kubernetes documents for a node that is shut down and will not come back by itself. */
export const TAINT_OUT_OF_SERVICE = 'node.kubernetes.io/out-of-service';

/**
 * The replacement pod of one HA restart: `launcher-<vm>-<first 10 hex of sha256("ha/" + replaced pod uid)>`.
 * Deterministic per replaced pod: a retry or a stale cache meets AlreadyExists.
 */
export function haReplacementPodName(vmName: string, replacedPodUid: string): string {
  return `launcher-${vmName}-${createHash('sha256').update(`ha/${replacedPodUid}`).digest('hex').slice(0, 10)}`;
}

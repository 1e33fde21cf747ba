// Builds the StorageDomain controller on a manager: informers for domains, the VMs
// that use them and the storage job pods, and the key mapping from each to domains.
import { StorageDomain, VirtualMachine } from '@keyvirt/crds';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { podSchema } from '../runtime/core-schemas.ts';
import { mapToOwner } from '../runtime/owner-mapping.ts';
import { coreTypes } from '../runtime/resource.ts';
import { storageDomainType, virtualMachineType } from '../vm/names.ts';
import { domainCapacity, type DomainCapacity } from './domain-capacity-metrics.ts';
import { STORAGE_JOB_SELECTOR } from './names.ts';
import { StorageDomainController, type StorageSettings } from './storage-domain-controller.ts';

export interface StorageControllerWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
  /** Where the held-deletion gauge reads from. */
  metrics?: {
    addStorageSource(source: { heldDeletions(): Map<string, Map<string, number>> }): void;
    addStorageCapacitySource?(source: { capacities(): readonly DomainCapacity[] }): void;
  };
  settings: StorageSettings;
  /**
   * Manage only the StorageDomains whose labels match (a label selector). When absent
   * the VM selector applies to domains too: an operator that sees only some VMs must
   * not manage (and delete disks from) domains other VMs use.
   */
  domainSelector?: string | undefined;
  /** The VM controller's selector: the VM informer is shared with it. */
  vmSelector?: string | undefined;
}

export const DEFAULT_PROBE_INTERVAL_MS = 60_000;
export const DEFAULT_RETRY_AFTER_FAILURE_MS = 30_000;

export function addStorageDomainController(w: StorageControllerWiring): Controller {
  const { manager } = w;
  const domains = manager.informer(storageDomainType, StorageDomain, selectorOption(w.domainSelector ?? w.vmSelector));
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  // Jobs run where their claim is: the operator's namespace, or a VM's namespace for storageClass disks.
  const jobPods = manager.informer(coreTypes.pod, podSchema, { labelSelector: STORAGE_JOB_SELECTOR });
  const reconciler = new StorageDomainController({
    caches: { domain: (name) => domains.get(name), vms: () => vms.list(), jobPods: () => jobPods.list() },
    client: w.client,
    events: w.events,
    clock: w.clock,
    settings: w.settings,
  });
  w.metrics?.addStorageSource(reconciler);
  w.metrics?.addStorageCapacitySource?.({ capacities: () => domains.list().map(domainCapacity) });
  const controller = new Controller({ name: 'storagedomain', reconciler, log: w.log, clock: w.clock, workers: 2, observer: w.observer });
  controller.watch(domains);
  controller.watch(jobPods, mapToOwner(storageDomainType));
  controller.watch(vms, (vm) => [...new Set(vm.spec.template.disks.flatMap((d) => (d.storageDomain === undefined ? [] : [d.storageDomain.name])))]);
  manager.addController(controller);
  return controller;
}

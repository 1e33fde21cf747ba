// Builds the evacuation controller on a manager: nodes are its keys; a VM maps to the
// node its status names (old and new), a migration to the node it evacuates and to the
// node of its VM.
import { VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { nodeSchema } from '../runtime/core-schemas.ts';
import { coreTypes, keyOf } from '../runtime/resource.ts';
import { virtualMachineType } from '../vm/names.ts';
import { EvacuationController } from './evacuation-controller.ts';
import { ANNOTATION_EVACUATION_NODE, migrationType } from './names.ts';

export interface EvacuationControllerWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
  /** The VM controller's selector: only its VMs are moved. */
  vmSelector?: string | undefined;
}

/** The index of VMs by the node their status names. */
const BY_STATUS_NODE = 'status.nodeName';

export function addEvacuationController(w: EvacuationControllerWiring): Controller {
  const { manager } = w;
  const nodes = manager.informer(coreTypes.node, nodeSchema);
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  // The same informer as the migration controller's: evacuation migrations carry their VM's labels.
  const migrations = manager.informer(migrationType, VirtualMachineMigration, selectorOption(w.vmSelector));
  if (!vms.hasIndex(BY_STATUS_NODE)) vms.addIndex(BY_STATUS_NODE, (vm) => (vm.status?.nodeName === undefined ? [] : [vm.status.nodeName]));
  const reconciler = new EvacuationController({
    caches: { node: (name) => nodes.get(name), vm: (key) => vms.get(key), vmsOnNode: (name) => vms.byIndex(BY_STATUS_NODE, name), migrations: () => migrations.list() },
    client: w.client,
    events: w.events,
    now: () => w.clock.now(),
  });
  const controller = new Controller({ name: 'evacuation', reconciler, log: w.log, clock: w.clock, workers: 2, observer: w.observer });
  controller.watch(nodes);
  controller.watch(vms, (vm) => (vm.status?.nodeName === undefined ? [] : [vm.status.nodeName]));
  controller.watch(migrations, (m) => {
    const keys = new Set<string>();
    const evacuated = m.metadata.annotations?.[ANNOTATION_EVACUATION_NODE];
    if (evacuated !== undefined) keys.add(evacuated);
    const node = vms.get(keyOf({ namespace: m.metadata.namespace, name: m.spec.vmName }))?.status?.nodeName;
    if (node !== undefined) keys.add(node);
    return [...keys];
  });
  manager.addController(controller);
  return controller;
}

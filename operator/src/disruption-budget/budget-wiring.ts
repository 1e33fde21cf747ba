// Builds the launcher disruption-budget controller on a manager: the VM informer (shared
// with the VM controller, same selector) and an informer on the budgets it manages.
import { VirtualMachine } from '@keyvirt/crds';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { podDisruptionBudgetSchema } from '../runtime/core-schemas.ts';
import { mapToOwner } from '../runtime/owner-mapping.ts';
import { virtualMachineType } from '../vm/names.ts';
import { DisruptionBudgetController } from './budget-controller.ts';
import { BUDGET_SELECTOR, podDisruptionBudgetType } from './budget-spec.ts';

export interface BudgetControllerWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
  /** The VM controller's selector: only its VMs get budgets. */
  vmSelector?: string | undefined;
}

export function addDisruptionBudgetController(w: BudgetControllerWiring): Controller {
  const { manager } = w;
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  const budgets = manager.informer(podDisruptionBudgetType, podDisruptionBudgetSchema, { labelSelector: BUDGET_SELECTOR });
  const reconciler = new DisruptionBudgetController({
    caches: { vm: (k) => vms.get(k), budget: (k) => budgets.get(k) },
    client: w.client,
    events: w.events,
  });
  const controller = new Controller({ name: 'disruptionbudget', reconciler, log: w.log, clock: w.clock, workers: 2, observer: w.observer });
  controller.watch(vms);
  controller.watch(budgets, mapToOwner(virtualMachineType));
  manager.addController(controller);
  return controller;
}

// Builds the removal of earlier operators' launcher disruption budgets on a manager: an
// informer on those budgets only (BUDGET_SELECTOR), indexed by namespace; the
// controller's keys are namespaces. Wired only when the operator serves the launcher
// eviction webhook (ADR 0121).
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import type { ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { podDisruptionBudgetSchema } from '../runtime/core-schemas.ts';
import { BudgetRemovalController, BUDGET_SELECTOR, podDisruptionBudgetType } from './budget-controller.ts';

export interface BudgetRemovalWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
}

const BY_NAMESPACE = 'namespace';

export function addBudgetRemovalController(w: BudgetRemovalWiring): Controller {
  const budgets = w.manager.informer(podDisruptionBudgetType, podDisruptionBudgetSchema, { labelSelector: BUDGET_SELECTOR });
  if (!budgets.hasIndex(BY_NAMESPACE)) budgets.addIndex(BY_NAMESPACE, (o) => [o.metadata.namespace ?? '']);
  const reconciler = new BudgetRemovalController({ budgets: (namespace) => budgets.byIndex(BY_NAMESPACE, namespace), client: w.client });
  const controller = new Controller({ name: 'disruptionbudget', reconciler, log: w.log, clock: w.clock, workers: 1, observer: w.observer });
  controller.watch(budgets, (o) => [o.metadata.namespace ?? '']);
  w.manager.addController(controller);
  return controller;
}

// Builds the launcher disruption-budget controller on a manager: the VM informer (shared
// with the VM controller, same selector), an informer on the budgets it manages and the
// shared launcher pod cache, each indexed by namespace; the controller's keys are namespaces.
import { VirtualMachine } from '@keyvirt/crds';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { podDisruptionBudgetSchema } from '../runtime/core-schemas.ts';
import type { Informer, KubeObject } from '../runtime/informer.ts';
import { launcherPodInformer } from '../vm/launcher-pod-cache.ts';
import { virtualMachineType } from '../vm/names.ts';
import { DisruptionBudgetController } from './budget-controller.ts';
import { BUDGET_SELECTOR, namespaceNeedsBudget, podDisruptionBudgetType } from './budget-spec.ts';

export interface BudgetControllerWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
  /** The VM controller's selector: only its VMs get budgets. */
  vmSelector?: string | undefined;
}

const BY_NAMESPACE = 'namespace';
/** The index of VMs that need their namespace's budget, by namespace. */
const NEEDING_BUDGET = 'namespace-needing-budget';

function byNamespace<T extends KubeObject>(informer: Informer<T>): (namespace: string) => T[] {
  if (!informer.hasIndex(BY_NAMESPACE)) informer.addIndex(BY_NAMESPACE, (o) => [o.metadata.namespace ?? '']);
  return (namespace) => informer.byIndex(BY_NAMESPACE, namespace);
}

export function addDisruptionBudgetController(w: BudgetControllerWiring): Controller {
  const { manager } = w;
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  const budgets = manager.informer(podDisruptionBudgetType, podDisruptionBudgetSchema, { labelSelector: BUDGET_SELECTOR });
  // The launcher pod cache of the VM controller (launcher pods only).
  const pods = launcherPodInformer(manager);
  // The namespaces of VMs that need the budget, by the decision's own rule applied to each VM.
  if (!vms.hasIndex(NEEDING_BUDGET)) vms.addIndex(NEEDING_BUDGET, (vm) => (namespaceNeedsBudget([vm]) ? [vm.metadata.namespace ?? ''] : []));
  const reconciler = new DisruptionBudgetController({
    caches: { vms: byNamespace(vms), needsBudget: (namespace) => vms.countByIndex(NEEDING_BUDGET, namespace) > 0, budgets: byNamespace(budgets), pods: byNamespace(pods) },
    client: w.client,
    events: w.events,
  });
  const controller = new Controller({ name: 'disruptionbudget', reconciler, log: w.log, clock: w.clock, workers: 2, observer: w.observer });
  const namespaceKey = (o: { metadata: { namespace?: string | undefined } }): string[] => [o.metadata.namespace ?? ''];
  // A VM's update matters only when its eviction strategy changes (its status writes do not): a burst's status writes would each queue a namespace-wide reconcile.
  controller.watch(vms, namespaceKey, { updateMatters: (old, vm) => old.spec.evictionStrategy !== vm.spec.evictionStrategy });
  controller.watch(budgets, namespaceKey);
  manager.addController(controller);
  return controller;
}

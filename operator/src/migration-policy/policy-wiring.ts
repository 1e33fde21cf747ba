// Builds the MigrationPolicy controller on a manager: informers for policies, the VMs
// the operator manages (shared with the VM controller) and namespaces; any change to
// one of them may move VMs between policies, so it reconciles every policy.
import { MigrationPolicy, VirtualMachine } from '@keyvirt/crds';
import type { Logger } from 'pino';
import type { Clock } from '../runtime/clock.ts';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption } from '../runtime/controller-wiring.ts';
import { namespaceSchema } from '../runtime/core-schemas.ts';
import type { KubeClient } from '../runtime/kube-client.ts';
import type { Manager } from '../runtime/manager.ts';
import { coreTypes } from '../runtime/resource.ts';
import { virtualMachineType } from '../vm/names.ts';
import { migrationPolicyType } from './names.ts';
import { MigrationPolicyController } from './policy-controller.ts';
import { sameJson } from '../runtime/canonical-json.ts';

export interface MigrationPolicyWiring {
  manager: Manager;
  client: KubeClient;
  log: Logger;
  clock: Clock;
  observer?: ControllerObserver;
  /**
   * Manage only the MigrationPolicies whose labels match (a label selector). When absent
   * the VM selector applies: an operator that sees only some VMs must not write the
   * status of policies other operators count.
   */
  policySelector?: string | undefined;
  /** The VM controller's selector: the VM informer is shared with it. */
  vmSelector?: string | undefined;
}

export function addMigrationPolicyController(w: MigrationPolicyWiring): Controller {
  const { manager } = w;
  const policies = manager.informer(migrationPolicyType, MigrationPolicy, selectorOption(w.policySelector ?? w.vmSelector));
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  const namespaces = manager.informer(coreTypes.namespace, namespaceSchema);
  const reconciler = new MigrationPolicyController({
    caches: {
      policy: (name) => policies.get(name),
      policies: () => policies.list(),
      vms: () => vms.list(),
      namespace: (name) => namespaces.get(name),
    },
    client: w.client,
    clock: w.clock,
  });
  const controller = new Controller({ name: 'migrationpolicy', reconciler, log: w.log, clock: w.clock, workers: 1, observer: w.observer });
  const everyPolicy = (): string[] => policies.list().map((p) => p.metadata.name);
  controller.watch(policies, everyPolicy);
  // A policy's status counts the VMs it selects, by their labels: a VM's status writes change nothing of it.
  controller.watch(vms, everyPolicy, { updateMatters: (old, vm) => !sameJson(old.metadata.labels ?? {}, vm.metadata.labels ?? {}) });
  controller.watch(namespaces, everyPolicy);
  manager.addController(controller);
  return controller;
}

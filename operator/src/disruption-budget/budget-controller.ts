// The launcher disruption-budget controller (root kind VirtualMachine, apart from the VM
// controller): one PodDisruptionBudget per LiveMigrate VM, created, corrected and
// removed from the VM spec; the garbage collector removes it with the VM.
import type { VirtualMachine } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import type { EventSink } from '../runtime/event-recorder.ts';
import { type KubeClient, isAlreadyExists, isConflict, isNotFound } from '../runtime/kube-client.ts';
import { collectionPath, keyOf, objectPath, refOfKey } from '../runtime/resource.ts';
import { budgetAction, budgetName, podDisruptionBudgetType } from './budget-spec.ts';

export interface BudgetCaches {
  vm(key: string): VirtualMachine | undefined;
  budget(key: string): PodDisruptionBudget | undefined;
}

export interface BudgetControllerDeps {
  caches: BudgetCaches;
  client: Pick<KubeClient, 'create' | 'patch' | 'delete'>;
  events: EventSink;
}

/** How long to wait for a foreign budget of the same name (usually a deleted VM's) to go. */
const FOREIGN_RETRY_MS = 10_000;

export class DisruptionBudgetController implements Reconciler {
  readonly #d: BudgetControllerDeps;
  /** VM keys whose foreign budget was reported already (one event per VM). */
  readonly #reportedForeign = new Set<string>();

  constructor(deps: BudgetControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const ref = refOfKey(key);
    const vm = this.#d.caches.vm(key);
    const budgetRef = { namespace: ref.namespace, name: budgetName(ref.name) };
    const action = budgetAction(vm, this.#d.caches.budget(keyOf(budgetRef)));
    if (action.kind !== 'foreign') this.#reportedForeign.delete(key);
    switch (action.kind) {
      case 'none':
        return {};
      case 'create':
        try {
          await this.#d.client.create(collectionPath(podDisruptionBudgetType, ref.namespace), action.body);
          ctx.log.info('launcher disruption budget created');
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
        }
        return {};
      case 'update':
        await this.#d.client.patch(objectPath(podDisruptionBudgetType, budgetRef), { metadata: { resourceVersion: action.resourceVersion }, spec: action.spec }, 'merge');
        ctx.log.info('launcher disruption budget corrected');
        return {};
      case 'delete':
        try {
          await this.#d.client.delete(objectPath(podDisruptionBudgetType, budgetRef), { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: action.uid } });
          ctx.log.info('launcher disruption budget removed (evictionStrategy is not LiveMigrate)');
        } catch (err) {
          if (!isNotFound(err) && !isConflict(err)) throw err;
        }
        return {};
      case 'foreign':
        if (vm !== undefined && !this.#reportedForeign.has(key)) {
          this.#reportedForeign.add(key);
          ctx.log.warn({ owner: action.owner }, 'a disruption budget of this name belongs to another object');
          await this.#d.events.record(
            { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata },
            {
              type: 'Warning',
              reason: 'DisruptionBudgetConflict',
              action: 'ProtectFromEviction',
              note: `PodDisruptionBudget ${budgetRef.name} exists and belongs to ${action.owner ?? 'nobody'}; waiting for it to go`,
            },
          );
        }
        return vm === undefined ? {} : { requeueAfterMs: FOREIGN_RETRY_MS };
    }
  }
}

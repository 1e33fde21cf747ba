// The removal of the launcher disruption budgets earlier operators made (keyed by
// namespace, apart from the VM controller): one PodDisruptionBudget per namespace
// (ADR 0112) or per VM (ADR 0090). The launcher eviction webhook (ADR 0121) refuses the
// eviction of a running LiveMigrate launcher in their place, at no cost per pod change;
// a budget left behind would keep the disruption controller counting every launcher pod
// of its namespace at each change of any of them. An operator removes them only while it
// serves the webhook (the wiring's condition), so no LiveMigrate launcher is ever left
// without one or the other.
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { type KubeClient, isConflict, isNotFound } from '../runtime/kube-client.ts';
import { objectPath, type ResourceType } from '../runtime/resource.ts';
import { LABEL_MANAGED_BY, MANAGED_BY } from '../vm/names.ts';

export const podDisruptionBudgetType: ResourceType = {
  group: 'policy',
  version: 'v1',
  plural: 'poddisruptionbudgets',
  kind: 'PodDisruptionBudget',
  namespaced: true,
};

export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const BUDGET_COMPONENT = 'launcher-disruption-budget';
/** The label selector of every launcher budget an earlier operator made (per namespace, ADR 0112, and per VM, ADR 0090). */
export const BUDGET_SELECTOR = `${LABEL_COMPONENT}=${BUDGET_COMPONENT},${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export interface BudgetRemovalDeps {
  /** The launcher budgets of a namespace (BUDGET_SELECTOR). */
  budgets(namespace: string): readonly PodDisruptionBudget[];
  client: Pick<KubeClient, 'delete'>;
}

export class BudgetRemovalController implements Reconciler {
  readonly #d: BudgetRemovalDeps;

  constructor(deps: BudgetRemovalDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, namespace: string): Promise<ReconcileResult> {
    for (const b of this.#d.budgets(namespace)) {
      if (b.metadata.deletionTimestamp !== undefined) continue;
      try {
        // The uid precondition: a budget someone made again under the same name since the cache saw this one stays.
        await this.#d.client.delete(objectPath(podDisruptionBudgetType, { namespace, name: b.metadata.name }), { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: b.metadata.uid } });
        ctx.log.info({ budget: b.metadata.name }, 'launcher disruption budget of an earlier operator removed; the eviction webhook protects the launchers');
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
    }
    return {};
  }
}

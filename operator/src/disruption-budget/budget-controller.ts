// The launcher disruption-budget controller (keyed by namespace, apart from the VM
// controller): one PodDisruptionBudget per namespace where one of this operator's VMs is
// LiveMigrate, created and corrected, never deleted (operators sharing the cluster by VM
// selector share it; ADR 0112); per-VM budgets of an earlier operator (ADR 0090) for
// this operator's VMs removed once the namespace's budget covers their pods.
import type { VirtualMachine } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { PodDisruptionBudget, Pod } from '../runtime/core-schemas.ts';
import type { EventSink } from '../runtime/event-recorder.ts';
import { type KubeClient, isAlreadyExists, isConflict, isNotFound } from '../runtime/kube-client.ts';
import { LABEL_VM_UID } from '../vm/names.ts';
import { collectionPath, objectPath } from '../runtime/resource.ts';
import { budgetAction, NAMESPACE_BUDGET_NAME, podDisruptionBudgetType, removableVmBudgets } from './budget-spec.ts';

export interface BudgetCaches {
  /** The VMs of a namespace. */
  vms(namespace: string): readonly VirtualMachine[];
  /** namespaceNeedsBudget of the namespace's VMs, answered without reading them (an index count). */
  needsBudget(namespace: string): boolean;
  /** The budgets the operator manages in a namespace. */
  budgets(namespace: string): readonly PodDisruptionBudget[];
  /** The launcher pods of a namespace. */
  pods(namespace: string): readonly Pod[];
}

export interface BudgetControllerDeps {
  caches: BudgetCaches;
  client: Pick<KubeClient, 'create' | 'patch' | 'delete'>;
  events: EventSink;
}

/** How long to wait for a foreign budget of the same name to go. */
const FOREIGN_RETRY_MS = 10_000;
/** How soon to look again at per-VM budgets whose pods are not labelled yet. */
const LEGACY_RETRY_MS = 5_000;

export class DisruptionBudgetController implements Reconciler {
  readonly #d: BudgetControllerDeps;
  /** Namespaces whose budget creation met AlreadyExists while the cache showed none. */
  readonly #refusedOnce = new Set<string>();
  /** Namespaces whose foreign budget was reported already (one event per namespace). */
  readonly #reportedForeign = new Set<string>();

  constructor(deps: BudgetControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, namespace: string): Promise<ReconcileResult> {
    // The namespace's VMs are read only on the rare paths (a refused creation, per-VM budgets): this runs at every VM's creation.
    const budgets = this.#d.caches.budgets(namespace);
    const existing = budgets.find((b) => b.metadata.name === NAMESPACE_BUDGET_NAME);
    const action = budgetAction(namespace, this.#d.caches.needsBudget(namespace), existing);
    const ref = { namespace, name: NAMESPACE_BUDGET_NAME };
    if (existing !== undefined) this.#refusedOnce.delete(namespace);
    switch (action.kind) {
      case 'none':
        break;
      case 'create':
        try {
          await this.#d.client.create(collectionPath(podDisruptionBudgetType, namespace), action.body);
          ctx.log.info('launcher disruption budget of the namespace created');
          this.#refusedOnce.delete(namespace);
          this.#reportedForeign.delete(namespace);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
          await this.#refused(ctx, namespace, this.#d.caches.vms(namespace));
          return { requeueAfterMs: FOREIGN_RETRY_MS };
        }
        break;
      case 'update':
        await this.#d.client.patch(objectPath(podDisruptionBudgetType, ref), { metadata: { resourceVersion: action.resourceVersion }, spec: action.spec }, 'merge');
        ctx.log.info('launcher disruption budget of the namespace corrected');
        break;
    }
    return this.#removeVmBudgets(ctx, namespace, budgets, existing);
  }

  /** Per-VM budgets of an earlier operator: removed once the namespace's budget covers their pods. */
  async #removeVmBudgets(
    ctx: ReconcileContext,
    namespace: string,
    budgets: readonly PodDisruptionBudget[],
    namespaceBudget: PodDisruptionBudget | undefined,
  ): Promise<ReconcileResult> {
    // Most namespaces hold no per-VM budget: the VMs' uids (a walk over every VM) are gathered only when one exists.
    if (!budgets.some((b) => b.metadata.name !== NAMESPACE_BUDGET_NAME)) return {};
    const vmUids = new Set(this.#d.caches.vms(namespace).map((v) => v.metadata.uid ?? ''));
    const perVm = budgets.filter((b) => b.metadata.name !== NAMESPACE_BUDGET_NAME && b.metadata.deletionTimestamp === undefined && vmUids.has(b.spec?.selector?.matchLabels?.[LABEL_VM_UID] ?? ''));
    if (perVm.length === 0) return {};
    const removable = removableVmBudgets(perVm, vmUids, namespaceBudget, this.#d.caches.pods(namespace));
    for (const b of removable) {
      try {
        await this.#d.client.delete(objectPath(podDisruptionBudgetType, { namespace, name: b.metadata.name }), { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: b.metadata.uid } });
        ctx.log.info({ budget: b.metadata.name }, 'per-VM launcher disruption budget removed; the namespace budget covers its pods');
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
    }
    return removable.length < perVm.length ? { requeueAfterMs: LEGACY_RETRY_MS } : {};
  }

  /**
   * The name is taken and the cache (budgets KeyVirt manages) does not show it: the
   * cache is behind, or another object holds the name. Refused twice FOREIGN_RETRY_MS
   * apart, it is another object's: left alone and reported once per namespace on the
   * first of its LiveMigrate VMs by name.
   */
  async #refused(ctx: ReconcileContext, namespace: string, vms: readonly VirtualMachine[]): Promise<void> {
    if (!this.#refusedOnce.has(namespace)) {
      this.#refusedOnce.add(namespace);
      return;
    }
    if (this.#reportedForeign.has(namespace)) return;
    this.#reportedForeign.add(namespace);
    ctx.log.warn({ budget: NAMESPACE_BUDGET_NAME }, 'a disruption budget of this name belongs to another object');
    const vm = [...vms].filter((v) => v.spec.evictionStrategy === 'LiveMigrate').sort((x, y) => x.metadata.name.localeCompare(y.metadata.name))[0];
    if (vm === undefined) return;
    await this.#d.events.record(
      { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata },
      {
        type: 'Warning',
        reason: 'DisruptionBudgetConflict',
        action: 'ProtectFromEviction',
        note: `PodDisruptionBudget ${NAMESPACE_BUDGET_NAME} exists and is not managed by KeyVirt; LiveMigrate VMs of this namespace are not protected from eviction until it goes`,
      },
    );
  }
}

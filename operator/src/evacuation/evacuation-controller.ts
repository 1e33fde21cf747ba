// The evacuation controller (root kind Node): on a cordoned or `keyvirt.io/drain`-tainted
// node it creates one VirtualMachineMigration per LiveMigrate VM (the migration
// controller moves the VM and deletes its source pod), retries failed ones after a
// backoff, and calls off the ones still Pending when the node is uncordoned. Progress
// is reported as events on the Node (on transitions) and on each VM it moves; the Node
// object itself is never written.
import { API_VERSION, type VirtualMachine, type VirtualMachineMigration } from '@keyvirt/crds';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { Node } from '../runtime/core-schemas.ts';
import type { EventSink, EventTarget, RecordedEvent } from '../runtime/event-recorder.ts';
import { type KubeClient, isAlreadyExists, isConflict, isNotFound } from '../runtime/kube-client.ts';
import { apiVersionOf, collectionPath, keyOf, objectPath } from '../runtime/resource.ts';
import { virtualMachineType } from '../vm/names.ts';
import { drainReason, type EvacuationPlan, planEvacuation, type VmEvacuation } from './evacuation-plan.ts';
import { ANNOTATION_EVACUATION_ATTEMPT, ANNOTATION_EVACUATION_NODE, LABEL_EVACUATION, evacuationLabelValue, migrationType } from './names.ts';

export interface EvacuationCaches {
  node(name: string): Node | undefined;
  /** A managed VM by its cache key. */
  vm(key: string): VirtualMachine | undefined;
  /** The managed VMs whose status names the node (an index: never a walk over every VM). */
  vmsOnNode(name: string): readonly VirtualMachine[];
  migrations(): readonly VirtualMachineMigration[];
}

export interface EvacuationControllerDeps {
  caches: EvacuationCaches;
  client: Pick<KubeClient, 'create' | 'delete'>;
  events: EventSink;
  now: () => number;
}

/** The evacuation migration of one VM, owned (not controlled) by the VM so that it goes with it. */
export function evacuationMigration(vm: VirtualMachine, nodeName: string, name: string, attempt: number): VirtualMachineMigration {
  return {
    apiVersion: API_VERSION,
    kind: 'VirtualMachineMigration',
    metadata: {
      name,
      namespace: vm.metadata.namespace,
      labels: { ...vm.metadata.labels, [LABEL_EVACUATION]: evacuationLabelValue(nodeName), 'keyvirt.io/vm': vm.metadata.name },
      annotations: { [ANNOTATION_EVACUATION_NODE]: nodeName, [ANNOTATION_EVACUATION_ATTEMPT]: String(attempt) },
      ownerReferences: [{ apiVersion: apiVersionOf(virtualMachineType), kind: 'VirtualMachine', name: vm.metadata.name, uid: vm.metadata.uid ?? '' }],
    },
    spec: { vmName: vm.metadata.name },
  };
}

function vmTarget(vm: VirtualMachine): EventTarget {
  return { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata };
}

function nodeTarget(name: string, node: Node | undefined): EventTarget {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, uid: node?.metadata.uid } };
}

/** One line per VM that keeps the node from Maintenance, for the node's events. */
function summary(vms: readonly VmEvacuation[]): string {
  return vms
    .filter((v) => v.verdict.kind !== 'shutdown')
    .map(({ vm, verdict }) => `${vm.metadata.namespace ?? ''}/${vm.metadata.name}: ${verdict.kind === 'blocked' ? verdict.reason : verdict.kind}`)
    .join('; ');
}

export class EvacuationController implements Reconciler {
  readonly #d: EvacuationControllerDeps;
  /** Node → what its last event said (phase and blocked VMs): events on transitions only. */
  readonly #reported = new Map<string, string>();

  constructor(deps: EvacuationControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, nodeName: string): Promise<ReconcileResult> {
    const node = this.#d.caches.node(nodeName);
    const migrations = this.#d.caches.migrations();
    const plan = planEvacuation({ nodeName, node, vms: this.#concernedVms(nodeName, node, migrations), migrations, now: this.#d.now() });
    for (const m of [...plan.cancel, ...plan.prune]) await this.#delete(m);
    if (plan.cancel.length > 0) ctx.log.info({ migrations: plan.cancel.map((m) => m.metadata.name) }, 'node no longer drained; pending evacuation migrations called off');
    for (const { vm, verdict } of plan.vms) {
      if (verdict.kind !== 'migrate') continue;
      const created = await this.#create(evacuationMigration(vm, nodeName, verdict.name, verdict.attempt));
      if (!created) continue;
      ctx.log.info({ vm: vm.metadata.name, namespace: vm.metadata.namespace, migration: verdict.name, attempt: verdict.attempt }, 'evacuation migration created');
      await this.#d.events.record(vmTarget(vm), {
        type: verdict.previousFailure === undefined ? 'Normal' : 'Warning',
        reason: verdict.previousFailure === undefined ? 'Evacuating' : 'EvacuationRetried',
        action: 'Migrate',
        note:
          verdict.previousFailure === undefined
            ? `node ${nodeName} is being drained: migration ${verdict.name} created`
            : `node ${nodeName} is still being drained: attempt ${String(verdict.attempt)}, migration ${verdict.name}, after: ${verdict.previousFailure}`,
      });
    }
    await this.#report(nodeName, node, plan);
    return plan.requeueAfterMs === undefined ? {} : { requeueAfterMs: plan.requeueAfterMs };
  }

  /**
   * The VMs the plan reads: those on the node when it is drained, and the managed VMs
   * its evacuation migrations name. Every VM's status event queues its node, so a walk
   * over every VM here made a burst of N VMs cost N².
   */
  #concernedVms(nodeName: string, node: Node | undefined, migrations: readonly VirtualMachineMigration[]): VirtualMachine[] {
    const out = new Map<string, VirtualMachine>();
    if (drainReason(node) !== undefined) for (const vm of this.#d.caches.vmsOnNode(nodeName)) out.set(keyOf(vm.metadata), vm);
    for (const m of migrations) {
      if (m.metadata.annotations?.[ANNOTATION_EVACUATION_NODE] !== nodeName) continue;
      const key = keyOf({ namespace: m.metadata.namespace, name: m.spec.vmName });
      const vm = out.has(key) ? undefined : this.#d.caches.vm(key);
      if (vm !== undefined) out.set(key, vm);
    }
    return [...out.values()];
  }

  async #create(m: VirtualMachineMigration): Promise<boolean> {
    try {
      await this.#d.client.create(collectionPath(migrationType, m.metadata.namespace), m);
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    }
  }

  async #delete(m: VirtualMachineMigration): Promise<void> {
    try {
      await this.#d.client.delete(objectPath(migrationType, { namespace: m.metadata.namespace, name: m.metadata.name }), {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        ...(m.metadata.uid === undefined ? {} : { preconditions: { uid: m.metadata.uid } }),
      });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }

  async #report(nodeName: string, node: Node | undefined, plan: EvacuationPlan): Promise<void> {
    const previous = this.#reported.get(nodeName);
    const blocked = plan.vms.filter((v) => v.verdict.kind === 'blocked').map((v) => `${v.vm.metadata.namespace ?? ''}/${v.vm.metadata.name}`);
    const fingerprint = `${plan.phase}|${blocked.join(',')}`;
    if (plan.phase === 'None') {
      this.#reported.delete(nodeName);
      if (previous !== undefined && !previous.startsWith('Maintenance') && node !== undefined) {
        await this.#emit(nodeName, node, { type: 'Normal', reason: 'EvacuationStopped', action: 'Evacuate', note: 'the node is schedulable again; VMs that left stay where they are' });
      }
      return;
    }
    if (fingerprint === previous) return;
    // A node this operator never had VMs on is none of its business.
    if (plan.phase === 'Maintenance' && previous === undefined) return;
    this.#reported.set(nodeName, fingerprint);
    const by = plan.reason === 'cordoned' ? 'cordoned' : 'tainted keyvirt.io/drain';
    if (plan.phase === 'Maintenance') {
      await this.#emit(nodeName, node, { type: 'Normal', reason: 'Maintenance', action: 'Evacuate', note: 'every LiveMigrate VM has left the node' });
      return;
    }
    const moving = plan.vms.filter((v) => v.verdict.kind !== 'shutdown').length;
    if (blocked.length > 0) {
      await this.#emit(nodeName, node, {
        type: 'Warning',
        reason: 'EvacuationBlocked',
        action: 'Evacuate',
        note: `node ${by}: ${String(blocked.length)} of ${String(moving)} LiveMigrate VMs cannot leave it (the eviction webhook holds the drain): ${summary(plan.vms.filter((v) => v.verdict.kind === 'blocked'))}`,
      });
      return;
    }
    if (previous === undefined || !previous.startsWith('PreparingForMaintenance')) {
      await this.#emit(nodeName, node, { type: 'Normal', reason: 'PreparingForMaintenance', action: 'Evacuate', note: `node ${by}: live-migrating ${String(moving)} VMs away (${summary(plan.vms)})` });
    }
  }

  async #emit(nodeName: string, node: Node | undefined, event: RecordedEvent): Promise<void> {
    await this.#d.events.record(nodeTarget(nodeName, node), event);
  }
}

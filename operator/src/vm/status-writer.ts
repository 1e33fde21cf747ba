// Writes a VM's status through the status subresource when it changed, and records an
// event for each transition (phase, or the reason the VM cannot start) — never on a
// reconcile that changed nothing. A launcher pod on its way up (Scheduling, Starting)
// gets no phase event: the controller's LauncherCreated event said it (ADR 0112). Every write is guarded by the resourceVersion it was
// computed from (runtime/status-patch.ts): a stale writer gets 409 Conflict, forgets
// what it wrote, and the reconcile is retried from the cache.
import type { VirtualMachine, VirtualMachineStatus } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { Logger } from 'pino';
import type { EventSink } from '../runtime/event-recorder.ts';
import { isConflict, type KubeClient } from '../runtime/kube-client.ts';
import { objectPath } from '../runtime/resource.ts';
import { freshestStatus, guardedStatusPatch, resourceVersionOf, sameStatus, type WrittenStatus } from '../runtime/status-patch.ts';
import { virtualMachineType } from './names.ts';

const warningPhases = new Set(['Failed', 'CrashLoop', 'Unschedulable']);
/** Phases of a launcher pod on its way up, told by the LauncherCreated event. */
const launchPhases = new Set(['Scheduling', 'Starting']);

function readyReason(status: VirtualMachineStatus | undefined): { reason: string; message: string } | undefined {
  const ready = status?.conditions?.find((c) => c.type === 'Ready');
  return ready === undefined ? undefined : { reason: ready.reason, message: ready.message };
}

export class VmStatusWriter {
  readonly #client: Pick<KubeClient, 'patch'>;
  readonly #events: EventSink;
  /** What this operator last wrote per VM uid: the cache may not show it yet. */
  readonly #written = new Map<string, WrittenStatus<VirtualMachineStatus>>();

  constructor(client: Pick<KubeClient, 'patch'>, events: EventSink) {
    this.#client = client;
    this.#events = events;
  }

  #freshest(vm: VirtualMachine): { status: VirtualMachineStatus | undefined; resourceVersion: string | undefined } {
    const uid = vm.metadata.uid ?? vm.metadata.name;
    const fresh = freshestStatus({ status: vm.status, resourceVersion: vm.metadata.resourceVersion }, this.#written.get(uid), sameStatus);
    if (fresh.written === undefined) this.#written.delete(uid);
    return fresh;
  }

  /** The freshest status known for `vm`: what this operator wrote last, else the cached one. */
  current(vm: VirtualMachine): VirtualMachineStatus | undefined {
    return this.#freshest(vm).status;
  }

  /** Writes `next` if it differs from the freshest status; returns whether it wrote. Throws KubeApiError 409 when `vm` is stale. */
  async write(vm: VirtualMachine, next: VirtualMachineStatus, log: Logger): Promise<boolean> {
    const uid = vm.metadata.uid ?? vm.metadata.name;
    const { status: previous, resourceVersion } = this.#freshest(vm);
    if (sameStatus(previous, next)) return false;
    const path = objectPath(virtualMachineType, { namespace: vm.metadata.namespace, name: vm.metadata.name }, 'status');
    let answer: unknown;
    try {
      answer = await this.#client.patch(path, guardedStatusPatch(next, resourceVersion), 'json');
    } catch (err) {
      if (isConflict(err)) {
        this.#written.delete(uid);
        log.info({ resourceVersion }, 'status write conflicted; retrying from fresh state');
      }
      throw err;
    }
    this.#written.set(uid, { status: next, resourceVersion: resourceVersionOf(answer) });
    await this.#recordTransitions(vm, previous, next, log);
    return true;
  }

  /** Forgets a deleted VM. */
  forget(uid: string): void {
    this.#written.delete(uid);
  }

  async #recordTransitions(vm: VirtualMachine, previous: VirtualMachineStatus | undefined, next: VirtualMachineStatus, log: Logger): Promise<void> {
    const target = { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata };
    const before = readyReason(previous);
    const after = readyReason(next);
    if (next.phase !== undefined && next.phase !== previous?.phase) {
      log.info({ from: previous?.phase, to: next.phase }, 'VM phase changed');
      if (launchPhases.has(next.phase) && next.launcherPod !== undefined) return;
      const warn = warningPhases.has(next.phase);
      await this.#events.record(target, {
        type: warn ? 'Warning' : 'Normal',
        reason: next.phase,
        action: 'Reconcile',
        note: warn && after !== undefined ? after.message : `VM is ${next.phase}${next.nodeName !== undefined ? ` on ${next.nodeName}` : ''}`,
      });
      return;
    }
    if (after !== undefined && warningPhases.has(next.phase ?? '') && (before?.reason !== after.reason || before.message !== after.message)) {
      await this.#events.record(target, { type: 'Warning', reason: after.reason, action: 'Reconcile', note: after.message });
    }
  }
}

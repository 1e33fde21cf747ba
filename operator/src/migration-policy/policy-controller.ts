// The MigrationPolicy controller (root kind MigrationPolicy): keeps each policy's
// status — how many VMs it applies to and a Ready condition — current as VMs,
// namespaces and other policies change. It writes status only, through the status
// subresource, and only when it changed (what it wrote last counts until the cache
// shows it, so a stale cache does not write twice). Every write is guarded by the
// resourceVersion it was computed from (runtime/status-patch.ts, ADR 0102): a stale
// writer gets 409 Conflict, forgets what it wrote, and the reconcile is retried.
import type { MigrationPolicy, MigrationPolicyStatus, VirtualMachine } from '@keyvirt/crds';
import type { Clock } from '../runtime/clock.ts';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { Namespace } from '../runtime/core-schemas.ts';
import { isConflict, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { objectPath } from '../runtime/resource.ts';
import { freshestStatus, guardedStatusPatch, resourceVersionOf, sameStatus, type WrittenStatus } from '../runtime/status-patch.ts';
import { rfc3339 } from '../vm/vm-status.ts';
import { migrationPolicyType } from './names.ts';
import { migrationPolicyStatus } from './policy-status.ts';

export interface PolicyCaches {
  policy(name: string): MigrationPolicy | undefined;
  policies(): readonly MigrationPolicy[];
  vms(): readonly VirtualMachine[];
  namespace(name: string): Namespace | undefined;
}

export interface PolicyControllerDeps {
  caches: PolicyCaches;
  client: Pick<KubeClient, 'patch'>;
  clock: Clock;
}

export class MigrationPolicyController implements Reconciler {
  readonly #d: PolicyControllerDeps;
  /** What this operator last wrote per policy (`name/uid`): the cache may not show it yet. */
  readonly #written = new Map<string, WrittenStatus<MigrationPolicyStatus>>();

  constructor(deps: PolicyControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const policy = this.#d.caches.policy(key);
    if (policy === undefined) {
      for (const uid of [...this.#written.keys()].filter((u) => u.startsWith(`${key}/`))) this.#written.delete(uid);
      return {};
    }
    const id = `${key}/${policy.metadata.uid ?? ''}`;
    const fresh = freshestStatus({ status: policy.status, resourceVersion: policy.metadata.resourceVersion }, this.#written.get(id), sameStatus);
    if (fresh.written === undefined) this.#written.delete(id);
    const previous = fresh.status;
    const next = migrationPolicyStatus({
      policy,
      vms: this.#d.caches.vms(),
      namespaceLabels: (ns) => this.#d.caches.namespace(ns)?.metadata.labels ?? {},
      policies: this.#d.caches.policies(),
      previous,
      now: rfc3339(this.#d.clock.now()),
    });
    if (sameStatus(previous, next)) return {};
    let answer: unknown;
    try {
      answer = await this.#d.client.patch(objectPath(migrationPolicyType, { name: key }, 'status'), guardedStatusPatch(next, fresh.resourceVersion), 'json');
    } catch (err) {
      if (isNotFound(err)) return {};
      if (isConflict(err)) {
        this.#written.delete(id);
        ctx.log.info({ resourceVersion: fresh.resourceVersion }, 'migration policy status write conflicted; retrying from fresh state');
      }
      throw err;
    }
    this.#written.set(id, { status: next, resourceVersion: resourceVersionOf(answer) });
    ctx.log.info({ matchedVirtualMachines: next.matchedVirtualMachines }, 'migration policy status written');
    return {};
  }
}

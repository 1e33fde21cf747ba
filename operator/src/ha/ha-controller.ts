// The HA controller (ADR 0064): root kind VirtualMachine. When the launcher of an HA VM
// is lost (silent past the threshold, or on a fenced node) it starts a replacement
// launcher pod on another node; that launcher waits until the storage lease has expired
// (at once on a fenced node), fences the disks and boots. Once the replacement reports
// the lease held and the guest running, this controller promotes it (removes its
// ha-replacement label: the VM controller then makes it the VM's launcher, as after a
// migration, ADR 0081) and force-deletes the old pod. A replacement whose old launcher
// is heard again first is deleted. It also restarts non-HA Always VMs of fenced nodes.
// It never writes VM status: the VM controller does, from the same observations.
import type { VirtualMachine } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { Clock } from '../runtime/clock.ts';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import type { EventSink, RecordedEvent } from '../runtime/event-recorder.ts';
import { leaseDomainOf, resolveDisks, type DiskLookup } from '../vm/disk-volumes.ts';
import type { LauncherFollowers } from '../vm/launcher-followers.ts';
import { mayEmulate, type LauncherSettings } from '../vm/launcher-pod.ts';
import { nodeFenced, nodeReady, reachability, LAUNCHER_SILENCE_MS } from '../vm/launcher-reachability.ts';
import { launcherResources } from '../vm/launcher-resources.ts';
import type { LauncherObjects } from '../vm/launcher-objects.ts';
import { isFinished, isHaReplacement, selectLauncher } from '../vm/launcher-selection.ts';
import { ANNOTATION_HA_REPLACED, ANNOTATION_HA_RESTARTS, LABEL_HA_REPLACEMENT, LABEL_MIGRATION_TARGET, haReplacementPodName } from '../vm/names.ts';
import type { PlacementDecider } from '../vm/placement.ts';
import { wantsRunning } from '../vm/run-strategy.ts';
import type { VmWriter } from '../vm/vm-patcher.ts';
import { decideHa, liveReplacement, type HaAction, type ReplaceAction } from './ha-decision.ts';
import { budgetState, recordRestart, type RestartBudget } from './restart-budget.ts';
import { aheadOf, type RestartCandidate } from './restart-order.ts';
import { keyOf } from '../runtime/resource.ts';
import type { NodeUsageSource } from '../scheduler/node-usage-ledger.ts';

export interface HaCaches {
  vm(key: string): VirtualMachine | undefined;
  nodes(): readonly Node[];
  /** What the cached pods ask of each node, for placing a replacement. */
  nodeUsage(): NodeUsageSource;
  podsOfVm(vm: VirtualMachine): readonly Pod[];
  migrationUids(vm: VirtualMachine): ReadonlySet<string>;
}

/** Promotion of a replacement: its ha-replacement label removed, guarded by its UID. */
export interface ReplacementWriter {
  promote(pod: Pod): Promise<void>;
}

export interface HaObserver {
  onHaRestart(): void;
}

export type LauncherObjectsForHa = Pick<LauncherObjects, 'createLauncher' | 'deletePod' | 'deleteTargetSecret' | 'cachedToken' | 'loadToken' | 'baseUrl'>;

export interface HaControllerDeps {
  caches: HaCaches;
  disks: DiskLookup;
  placement: PlacementDecider;
  launchers: LauncherObjectsForHa;
  /** The VM controller's followers of the VMs' current launchers (read only). */
  current: Pick<LauncherFollowers, 'silentMs'>;
  /** This controller's followers of replacement launchers. */
  replacements: Pick<LauncherFollowers, 'ensure' | 'forget' | 'latest'>;
  writer: ReplacementWriter;
  vmWriter: VmWriter;
  events: EventSink;
  settings: LauncherSettings;
  budget: RestartBudget;
  clock: Clock;
  observer?: HaObserver | undefined;
  silenceThresholdMs?: number | undefined;
  onTokenMissing: (key: string) => void;
}

const WAIT_POLL_MS = 1000;
const PRIORITY_WAIT_MS = 250;
const UNSCHEDULABLE_RETRY_MS = 5000;

export class HaController implements Reconciler {
  readonly #d: HaControllerDeps;
  /** VMs whose launcher is lost and whose replacement is not created yet: the restart queue. */
  readonly #pending = new Map<string, RestartCandidate>();
  /** Replaced pod UIDs already counted in the VM's restart budget (a stale cache must not count twice). */
  readonly #counted = new Set<string>();
  /** Refusals already reported (key/pod uid/reason): reported once. */
  readonly #reported = new Set<string>();
  /** Promoted pods whose clean-up (old pod, replacement Secret) is done. */
  readonly #cleaned = new Set<string>();
  /** Pod UIDs this controller deleted (`<uid>`) or force-deleted (`<uid>/force`): a stale cache never repeats a deletion. */
  readonly #deleted = new Set<string>();

  constructor(deps: HaControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const vm = this.#d.caches.vm(key);
    if (vm === undefined) {
      this.#d.replacements.forget(key);
      this.#pending.delete(key);
      return {};
    }
    const now = this.#d.clock.now();
    const pods = this.#d.caches.podsOfVm(vm);
    const selection = selectLauncher(vm, pods, this.#d.caches.migrationUids(vm), now);
    await this.#cleanUp(ctx, vm, pods, selection.pod);
    const replacements = pods.filter((p) => isHaReplacement(p) && !isFinished(p) && p.metadata.ownerReferences?.some((r) => r.controller === true && r.uid === vm.metadata.uid) === true);
    const replacement = liveReplacement(replacements, this.#deleted);
    this.#followReplacement(key, replacement);
    const active = selection.state.kind === 'active' ? selection.pod : undefined;
    const current = selection.pod;
    const silentMs = active === undefined ? undefined : this.#d.current.silentMs(key, active.metadata.uid ?? '');
    const threshold = this.#d.silenceThresholdMs ?? LAUNCHER_SILENCE_MS;
    const nodes = this.#d.caches.nodes();
    const node = nodes.find((n) => n.metadata.name === active?.spec.nodeName);
    const lease = leaseDomainOf(vm, this.#d.disks);
    const action = decideHa({
      vm,
      wantsRunning: vm.metadata.deletionTimestamp === undefined && wantsRunning(vm, selection.state),
      current,
      currentState: selection.state,
      reach: reachability({ pod: active, node, silentMs, silenceThresholdMs: threshold }),
      currentHeard: silentMs !== undefined && silentMs < threshold,
      replacements,
      deleteIssued: this.#deleted,
      replacementStatus: replacement === undefined ? undefined : this.#d.replacements.latest(key, replacement.metadata.uid ?? ''),
      healthyNodes: new Set(nodes.filter((n) => nodeReady(n) && !nodeFenced(n)).map((n) => n.metadata.name)),
      now,
      migrating: pods.some((p) => !isFinished(p) && p.metadata.labels?.[LABEL_MIGRATION_TARGET] !== undefined),
      noSharedStorage: 'problem' in lease ? lease.problem : undefined,
      budget: budgetState(vm.metadata.annotations?.[ANNOTATION_HA_RESTARTS], now, this.#d.budget),
    });
    if (action.kind !== 'replace') this.#pending.delete(key);
    return this.#act(ctx, key, vm, action, { current, replacement, now });
  }

  async #act(ctx: ReconcileContext, key: string, vm: VirtualMachine, action: HaAction, seen: { current: Pod | undefined; replacement: Pod | undefined; now: number }): Promise<ReconcileResult> {
    const { current, replacement } = seen;
    switch (action.kind) {
      case 'none':
        return {};
      case 'wait':
        return { requeueAfterMs: WAIT_POLL_MS };
      case 'refuse': {
        if (this.#once(`${key}/${current?.metadata.uid ?? ''}/${action.reason}`)) {
          ctx.log.warn({ reason: action.reason }, 'launcher lost; HA restart refused');
          await this.#event(vm, { type: 'Warning', reason: `HA${action.reason}`, action: 'Restart', note: action.message });
        }
        return { requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
      }
      case 'fenceRestart':
        ctx.log.warn({ node: action.node }, 'node fenced; deleting the launcher pod of a non-HA VM so that it starts elsewhere');
        await this.#deletePod(current, true);
        await this.#event(vm, { type: 'Warning', reason: 'NodeFenced', action: 'Restart', note: `node ${action.node} is fenced: launcher pod ${current?.metadata.name ?? ''} deleted, the VM starts on another node` });
        return {};
      case 'replace':
        return this.#replace(ctx, vm, action, seen);
      case 'promote':
        if (replacement !== undefined) await this.#promote(ctx, key, vm, replacement, action);
        return {};
      case 'deleteReplacement':
        if (replacement !== undefined) await this.#deleteReplacement(ctx, vm, replacement, action);
        return {};
    }
  }

  /** Deletes a replacement (graceful: its launcher releases what it holds) and its Secret, once. */
  async #deleteReplacement(ctx: ReconcileContext, vm: VirtualMachine, replacement: Pod, why: { reason: string; message: string }): Promise<void> {
    if (replacement.metadata.deletionTimestamp !== undefined || this.#deleted.has(replacement.metadata.uid ?? '')) return;
    ctx.log.info({ pod: replacement.metadata.name, reason: why.reason }, 'deleting the HA replacement pod');
    await this.#deletePod(replacement, false);
    await this.#d.launchers.deleteTargetSecret({ namespace: vm.metadata.namespace, name: replacement.metadata.name });
    this.#d.replacements.forget(keyOf(vm.metadata));
    await this.#event(vm, { type: 'Normal', reason: 'HAReplacementDeleted', action: 'Restart', note: `replacement pod ${replacement.metadata.name} deleted: ${why.message}` });
  }

  /** Deletes a pod guarded by its UID, at most once per UID and kind (graceful or forced) in this process. */
  async #deletePod(pod: Pod | undefined, force: boolean): Promise<void> {
    const uid = pod?.metadata.uid ?? '';
    if (pod === undefined || uid === '') return;
    const what = force ? `${uid}/force` : uid;
    if (this.#deleted.has(what)) return;
    await this.#d.launchers.deletePod({ namespace: pod.metadata.namespace, name: pod.metadata.name }, uid, force);
    remember(this.#deleted, what);
  }

  async #replace(ctx: ReconcileContext, vm: VirtualMachine, action: ReplaceAction, seen: { current: Pod | undefined; now: number }): Promise<ReconcileResult> {
    const { current, now } = seen;
    const key = keyOf(vm.metadata);
    const oldUid = current?.metadata.uid ?? '';
    if (!this.#pending.has(key)) this.#pending.set(key, { key, priority: vm.spec.highAvailability.priority, detectedAt: now });
    if (this.#once(`${key}/${oldUid}/detected`)) {
      ctx.log.warn({ node: action.failedNode, reason: action.reason, fenced: action.nodeFenced }, 'launcher lost; starting an HA replacement');
      await this.#event(vm, { type: 'Warning', reason: 'HADetectedFailure', action: 'Restart', note: `launcher pod ${current?.metadata.name ?? ''} lost: ${action.message}` });
    }
    if (aheadOf(key, [...this.#pending.values()]).length > 0) return { requeueAfterMs: PRIORITY_WAIT_MS };
    // Whatever happens next (created, unplaceable, failed), this VM no longer holds back the queue.
    try {
      return await this.#createReplacement(ctx, vm, action, { oldUid, now });
    } finally {
      this.#pending.delete(key);
    }
  }

  async #createReplacement(ctx: ReconcileContext, vm: VirtualMachine, action: ReplaceAction, seen: { oldUid: string; now: number }): Promise<ReconcileResult> {
    const { oldUid, now } = seen;
    const key = keyOf(vm.metadata);
    const lease = leaseDomainOf(vm, this.#d.disks);
    if ('problem' in lease) return {};
    const resolution = await resolveDisks(vm, this.#d.disks, { leaseDomain: lease.domain });
    if (!resolution.ok) {
      ctx.log.warn('the replacement cannot be rendered (disks); waiting');
      return { requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
    }
    const emulate = mayEmulate(vm, this.#d.settings);
    const resources = launcherResources(vm.spec.template, emulate);
    // Never the failed node nor one a replacement is stuck on, never a fenced one: as a migration target is placed, by the VM scheduler.
    const nodes = this.#d.caches.nodes().filter((n) => !action.exclude.includes(n.metadata.name) && !nodeFenced(n));
    const placement = this.#d.placement.place({ vm, requests: resources.requests, allowEmulation: emulate }, nodes, this.#d.caches.nodeUsage());
    if (placement.kind === 'Unschedulable') {
      ctx.log.warn({ message: placement.message }, 'no node for the HA replacement');
      if (this.#once(`${key}/${oldUid}/Unschedulable`)) {
        await this.#event(vm, { type: 'Warning', reason: 'HAReplacementUnschedulable', action: 'Restart', note: placement.message });
      }
      return { requeueAfterMs: UNSCHEDULABLE_RETRY_MS };
    }
    if (!this.#counted.has(oldUid)) {
      await this.#countRestart(vm, now);
      remember(this.#counted, oldUid);
    }
    if (action.supersedes !== undefined) await this.#deleteReplacement(ctx, vm, action.supersedes, action);
    const podName = haReplacementPodName(vm.metadata.name, action.nameSeed);
    const created = await this.#d.launchers.createLauncher(
      {
        vm,
        settings: this.#d.settings,
        affinity: placement.affinity,
        devices: placement.devices,
        disks: resolution.disks,
        lease: { domain: lease, nodeFenced: action.nodeFenced },
        haReplacement: { podName, replacedUid: oldUid },
      },
      ctx.log,
    );
    if (created) {
      ctx.log.info({ pod: podName, node: placement.node, nodeFenced: action.nodeFenced }, 'HA replacement pod created');
      await this.#event(vm, {
        type: 'Normal',
        reason: 'HAReplacementCreated',
        action: 'Restart',
        note: `replacement pod ${podName} placed on ${placement.node}; it ${action.nodeFenced ? 'claims the storage lease at once (node fenced)' : 'claims the storage lease once it has expired'}`,
      });
    }
    return { requeueAfterMs: WAIT_POLL_MS };
  }

  /**
   * Adds a restart to the VM's budget annotation. Guarded by the annotation's value as
   * this controller last saw it (a JSON patch `test`), not by the resourceVersion, which
   * every status write moves: only a stale view of the annotation itself is refused.
   */
  async #countRestart(vm: VirtualMachine, now: number): Promise<void> {
    const previous = vm.metadata.annotations?.[ANNOTATION_HA_RESTARTS];
    const value = recordRestart(previous, now, this.#d.budget);
    const path = `/metadata/annotations/${ANNOTATION_HA_RESTARTS.replaceAll('~', '~0').replaceAll('/', '~1')}`;
    if (previous !== undefined) {
      await this.#d.vmWriter.patch(vm, [{ op: 'test', path, value: previous }, { op: 'replace', path, value }], 'json');
    } else if (vm.metadata.annotations === undefined) {
      await this.#d.vmWriter.patch(vm, { metadata: { annotations: { [ANNOTATION_HA_RESTARTS]: value } } }, 'merge');
    } else {
      await this.#d.vmWriter.patch(vm, [{ op: 'add', path, value }], 'json');
    }
  }

  async #promote(ctx: ReconcileContext, key: string, vm: VirtualMachine, replacement: Pod, action: Extract<HaAction, { kind: 'promote' }>): Promise<void> {
    const status = this.#d.replacements.latest(key, replacement.metadata.uid ?? '');
    await this.#d.writer.promote(replacement);
    ctx.log.info({ pod: replacement.metadata.name, takeover: action.takeover }, 'HA replacement holds the lease and runs; promoted');
    this.#d.observer?.onHaRestart();
    await this.#event(vm, {
      type: 'Normal',
      reason: 'HALeaseAcquired',
      action: 'Restart',
      note: `replacement pod ${replacement.metadata.name} holds the storage lease (generation ${status?.lease?.generation ?? '?'}${action.takeover ? ', taken over after expiry, disks fenced' : ''})`,
    });
    // The pod as promoted (the cache shows it a moment later): no candidate label, the replaced UID annotated.
    const labels = Object.fromEntries(Object.entries(replacement.metadata.labels ?? {}).filter(([k]) => k !== LABEL_HA_REPLACEMENT));
    const promoted: Pod = { ...replacement, metadata: { ...replacement.metadata, labels, annotations: { ...replacement.metadata.annotations, [ANNOTATION_HA_REPLACED]: action.oldUid ?? '' } } };
    await this.#cleanUp(ctx, vm, this.#d.caches.podsOfVm(vm), promoted);
    this.#d.replacements.forget(key);
    await this.#event(vm, { type: 'Normal', reason: 'HARestarted', action: 'Restart', note: `the VM runs in pod ${replacement.metadata.name} on node ${replacement.spec.nodeName ?? '?'}` });
  }

  /**
   * After a promotion: the replaced pod is force-deleted (grace 0: a node that comes back
   * never restarts it, and its launcher could not take the lease anyway) and the
   * replacement's own Secret (read at its start) is deleted. Finished replacements go too.
   */
  async #cleanUp(ctx: ReconcileContext, vm: VirtualMachine, pods: readonly Pod[], launcher: Pod | undefined): Promise<void> {
    for (const p of pods) {
      if (isHaReplacement(p) && isFinished(p) && p.metadata.deletionTimestamp === undefined && !this.#deleted.has(p.metadata.uid ?? '')) {
        ctx.log.info({ pod: p.metadata.name }, 'deleting a finished HA replacement pod');
        await this.#deletePod(p, false);
        await this.#d.launchers.deleteTargetSecret({ namespace: p.metadata.namespace, name: p.metadata.name });
      }
    }
    const replaced = launcher?.metadata.annotations?.[ANNOTATION_HA_REPLACED];
    if (launcher === undefined || replaced === undefined || replaced === '' || isHaReplacement(launcher)) return;
    const old = pods.find((p) => p.metadata.uid === replaced);
    if (old !== undefined && !this.#deleted.has(`${replaced}/force`)) {
      ctx.log.info({ pod: old.metadata.name }, 'force-deleting the replaced launcher pod');
      await this.#deletePod(old, true);
    }
    const uid = launcher.metadata.uid ?? '';
    if (!this.#cleaned.has(uid)) {
      await this.#d.launchers.deleteTargetSecret({ namespace: launcher.metadata.namespace, name: launcher.metadata.name });
      remember(this.#cleaned, uid);
    }
  }

  #followReplacement(key: string, replacement: Pod | undefined): void {
    const ip = replacement?.status?.podIP;
    if (replacement === undefined || ip === undefined) {
      if (replacement === undefined) this.#d.replacements.forget(key);
      return;
    }
    const endpoint = (token: string): { podUid: string; baseUrl: string; token: string } => ({ podUid: replacement.metadata.uid ?? '', baseUrl: this.#d.launchers.baseUrl(ip), token });
    const token = this.#d.launchers.cachedToken(replacement);
    if (token !== undefined) {
      this.#d.replacements.ensure(key, endpoint(token));
      return;
    }
    this.#d.launchers.loadToken(replacement).then(
      (loaded) => {
        if (loaded !== undefined) this.#d.replacements.ensure(key, endpoint(loaded));
        else this.#d.onTokenMissing(key);
      },
      () => this.#d.onTokenMissing(key),
    );
  }

  /** True the first time `what` is seen (then remembered, boundedly). */
  #once(what: string): boolean {
    if (this.#reported.has(what)) return false;
    remember(this.#reported, what);
    return true;
  }

  async #event(vm: VirtualMachine, event: RecordedEvent): Promise<void> {
    await this.#d.events.record({ apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata }, event);
  }
}

/** What the controller remembers in memory is bounded: the oldest entries go first. */
const MEMORY_BOUND = 4096;

function remember(set: Set<string>, value: string): void {
  set.add(value);
  for (const old of set) {
    if (set.size <= MEMORY_BOUND) break;
    set.delete(old);
  }
}

// The VirtualMachine controller: level-based. Each reconcile reads the VM, its launcher
// pod and the launcher's latest status, takes at most one step (consume a request,
// create the launcher, stop it gracefully, remove a finished one, release the
// finalizer), and writes the status — also when the step failed. A VM's first start
// sets the finalizer beside the launcher's creation; a created launcher pod is expected
// until the cache shows it, and its status is written once it does (ADR 0112).
import type { VirtualMachine, VirtualMachineMigration, VirtualMachineStatus } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Clock } from '../runtime/clock.ts';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import type { EventSink } from '../runtime/event-recorder.ts';
import { haCondition } from '../ha/ha-condition.ts';
import { podKeepsLease } from '../ha/ha-decision.ts';
import { budgetState, DEFAULT_RESTART_BUDGET, type RestartBudget } from '../ha/restart-budget.ts';
import { leaseDomainOf, resolveDisks, type DiskLookup } from './disk-volumes.ts';
import type { LauncherFollowers } from './launcher-followers.ts';
import { nodeFenced, reachability, type Reachability } from './launcher-reachability.ts';
import { notMigratableDiskReasons, notMigratableTemplateReasons, type NotMigratable } from './live-migratable.ts';
import { mayEmulate, type LauncherSettings } from './launcher-pod.ts';
import { launcherResources } from './launcher-resources.ts';
import { LauncherSecretNotOwnedError, type LauncherObjects } from './launcher-objects.ts';
import { selectLauncher } from './launcher-selection.ts';
import { ANNOTATION_HA_RESTARTS, LABEL_EVICTION_STRATEGY, LABEL_VM_UID, VM_FINALIZER, launcherPodName } from './names.ts';
import type { VmWriter } from './vm-patcher.ts';
import type { PlacementDecider } from './placement.ts';
import type { NodeUsageSource } from '../scheduler/node-usage-ledger.ts';
import { consumeRequest, crashLoopDelayMs, decide, decideDeletion, wantsRunning, type Decision, type LauncherPodState } from './run-strategy.ts';
import { computeStatus, rfc3339, type StartBlocker } from './vm-status.ts';
import type { VmStatusWriter } from './status-writer.ts';

/** The caches the controller reads. */
export interface VmCaches {
  vm(key: string): VirtualMachine | undefined;
  nodes(): readonly Node[];
  /** What the cached pods ask of each node, for placing a launcher (never a walk over every pod: a reconcile reads what concerns its VM). */
  nodeUsage(): NodeUsageSource;
  /** The VM's launcher pods (its own and migration targets) in the VM's namespace. */
  podsOfVm(vm: VirtualMachine): readonly Pod[];
  /** The newest VirtualMachineMigration of the VM, if any. */
  latestMigration(vm: VirtualMachine): VirtualMachineMigration | undefined;
  /** The UIDs of every VirtualMachineMigration of the VM in the cache. */
  migrationUids(vm: VirtualMachine): ReadonlySet<string>;
}


export interface VmControllerDeps {
  caches: VmCaches;
  disks: DiskLookup;
  placement: PlacementDecider;
  launchers: LauncherObjects;
  followers: LauncherFollowers;
  statusWriter: VmStatusWriter;
  vmWriter: VmWriter;
  events: EventSink;
  settings: LauncherSettings;
  clock: Clock;
  /** The launcher's token could not be read yet: try again later. */
  onTokenMissing: (key: string) => void;
  /** The HA restart budget (for the HighAvailability condition); the default when absent. */
  haBudget?: RestartBudget | undefined;
}


/** Polling while something is in motion that no watch reports (a graceful stop's deadline). */
const STOP_POLL_MS = 2000;
const UNSCHEDULABLE_RETRY_MS = 30_000;
const STOP_EXTRA_GRACE_MS = 15_000;
const FINISHED_POD_DELETE_GRACE_MS = 10_000;
/**
 * How long a launcher pod this controller created is waited for in the cache before the
 * VM is reconciled as if it had none (a creation then meets AlreadyExists).
 */
export const LAUNCHER_EXPECTATION_MS = 30_000;

export class VmController implements Reconciler {
  readonly #d: VmControllerDeps;
  /** Graceful stops in progress: VM key → pod uid and when the stop was requested. */
  readonly #stops = new Map<string, { podUid: string; at: number }>();
  /** Launcher pods created and not yet in the cache: VM key → until when they are waited for. */
  readonly #expected = new Map<string, number>();

  constructor(deps: VmControllerDeps) {
    this.#d = deps;
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const vm = this.#d.caches.vm(key);
    if (vm === undefined) {
      this.#d.followers.forget(key);
      this.#stops.delete(key);
      this.#expected.delete(key);
      return {};
    }
    const podsOfVm = this.#d.caches.podsOfVm(vm);
    const waitMs = this.#expectationWait(key, podsOfVm.length > 0);
    if (waitMs !== undefined) {
      // The launcher pod created a moment ago is not in the cache yet: its watch event reconciles the VM again.
      ctx.log.debug('launcher pod created, waiting for the cache to show it');
      return { requeueAfterMs: waitMs };
    }
    const selection = selectLauncher(vm, podsOfVm, this.#d.caches.migrationUids(vm), this.#d.clock.now());
    for (const orphan of selection.orphanTargets) {
      ctx.log.warn({ pod: orphan.metadata.name }, 'deleting a migration target pod whose migration no longer exists');
      await this.#d.launchers.deletePod({ namespace: orphan.metadata.namespace, name: orphan.metadata.name }, orphan.metadata.uid ?? '', false, orphan.metadata.resourceVersion);
    }
    if (selection.foreign) {
      ctx.log.info('a launcher pod of an earlier VM with this name is still going away');
      return { requeueAfterMs: STOP_POLL_MS };
    }
    const { pod, state } = selection;
    this.#follow(key, pod, state);
    const scope: Scope = {
      ctx,
      key,
      vm,
      pod,
      state,
      now: this.#d.clock.now(),
      migration: this.#d.caches.latestMigration(vm),
      handOver: selection.handOver,
      haReplacing: selection.haReplacement !== undefined,
    };
    if (selection.handOver) {
      // A migration is handing the VM over (ADR 0081): nothing is started, stopped or deleted.
      ctx.log.debug('migration hand-over in progress; waiting');
      return this.#act(scope, { action: 'none' });
    }
    for (const leftover of selection.leftovers) {
      await this.#d.launchers.deletePod({ namespace: leftover.metadata.namespace, name: leftover.metadata.name }, leftover.metadata.uid ?? '');
    }
    await this.#labelEvictionStrategy(vm, podsOfVm);
    if (vm.metadata.deletionTimestamp !== undefined) return this.#reconcileDeletion(scope);
    if (!(vm.metadata.finalizers ?? []).includes(VM_FINALIZER)) {
      const first = decide(vm, state);
      if (consumeRequest(vm, state) === undefined && Object.keys(first.annotations).length === 0 && first.decision.action === 'create') {
        // The first start: the finalizer goes on beside the launcher's creation, not a reconcile of its own.
        return this.#act({ ...scope, addFinalizer: true }, first.decision);
      }
      await this.#addFinalizer(vm);
      return {};
    }
    const request = consumeRequest(vm, state);
    if (request !== undefined) {
      const body = {
        metadata: { annotations: request.annotations, resourceVersion: vm.metadata.resourceVersion },
        ...(request.runStrategy === undefined ? {} : { spec: { runStrategy: request.runStrategy } }),
      };
      await this.#d.vmWriter.patch(vm, body, 'merge');
      await this.#d.events.record(this.#target(vm), { ...request.event, action: 'Request', note: request.event.message });
      return {};
    }
    const { decision, annotations } = decide(vm, state);
    if (Object.keys(annotations).length > 0) {
      await this.#d.vmWriter.patch(vm, { metadata: { annotations, resourceVersion: vm.metadata.resourceVersion } }, 'merge');
      return {};
    }
    return this.#act(scope, decision);
  }

  /** Whether a launcher pod this controller created is still awaited in the cache, and for how long. */
  #expectationWait(key: string, seen: boolean): number | undefined {
    const until = this.#expected.get(key);
    if (until === undefined) return undefined;
    const left = until - this.#d.clock.now();
    if (seen || left <= 0) {
      this.#expected.delete(key);
      return undefined;
    }
    return left;
  }

  /**
   * Keeps each live launcher pod's eviction-strategy label equal to the VM's spec: the
   * launcher eviction webhook refuses to evict the running LiveMigrate ones (ADR 0121).
   */
  async #labelEvictionStrategy(vm: VirtualMachine, pods: readonly Pod[]): Promise<void> {
    const strategy = vm.spec.evictionStrategy;
    for (const pod of pods) {
      const done = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
      const ofThisVm = pod.metadata.labels?.[LABEL_VM_UID] === vm.metadata.uid;
      if (!ofThisVm || done || pod.metadata.deletionTimestamp !== undefined || pod.metadata.labels?.[LABEL_EVICTION_STRATEGY] === strategy) continue;
      await this.#d.launchers.labelPod({ namespace: pod.metadata.namespace, name: pod.metadata.name }, pod.metadata.resourceVersion, { [LABEL_EVICTION_STRATEGY]: strategy });
    }
  }

  async #addFinalizer(vm: VirtualMachine): Promise<void> {
    await this.#d.vmWriter.patch(vm, { metadata: { finalizers: [...(vm.metadata.finalizers ?? []), VM_FINALIZER], resourceVersion: vm.metadata.resourceVersion } }, 'merge');
  }

  #target(vm: VirtualMachine): { apiVersion: string; kind: string; metadata: VirtualMachine['metadata'] } {
    return { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: vm.metadata };
  }

  #follow(key: string, pod: Pod | undefined, state: LauncherPodState): void {
    const ip = pod?.status?.podIP;
    if (state.kind !== 'active' || ip === undefined || pod === undefined) {
      if (state.kind !== 'active') this.#d.followers.forget(key);
      return;
    }
    const token = this.#d.launchers.cachedToken(pod);
    if (token === undefined) {
      this.#d.launchers.loadToken(pod).then(
        (loaded) => {
          if (loaded !== undefined) this.#d.followers.ensure(key, { podUid: state.uid, baseUrl: this.#d.launchers.baseUrl(ip), token: loaded });
          else this.#d.onTokenMissing(key);
        },
        () => this.#d.onTokenMissing(key),
      );
      return;
    }
    this.#d.followers.ensure(key, { podUid: state.uid, baseUrl: this.#d.launchers.baseUrl(ip), token });
  }

  async #reconcileDeletion(scope: Scope): Promise<ReconcileResult> {
    const { ctx, key, vm, state } = scope;
    const decision = decideDeletion(state);
    if (decision === 'release') {
      this.#d.followers.forget(key);
      this.#stops.delete(key);
      this.#d.statusWriter.forget(vm.metadata.uid ?? vm.metadata.name);
      const finalizers = (vm.metadata.finalizers ?? []).filter((f) => f !== VM_FINALIZER);
      if (finalizers.length !== (vm.metadata.finalizers ?? []).length) {
        await this.#d.vmWriter.patch(vm, { metadata: { finalizers, resourceVersion: vm.metadata.resourceVersion } }, 'merge');
        ctx.log.info('guest stopped and launcher gone, finalizer released');
      }
      return {};
    }
    return this.#act(scope, decision);
  }

  async #act(scope: Scope, decision: Decision): Promise<ReconcileResult> {
    const { ctx, key, vm, pod, state, now } = scope;
    const previous = this.#d.statusWriter.current(vm);
    const progress: StepOutcome = {
      blocker: undefined,
      stopping: false,
      requeueAfterMs: undefined,
      notMigratable: [],
      startFailure: previous?.startFailure,
      restartCount: previous?.restartCount,
      created: false,
    };
    let failure: Error | undefined;
    try {
      if (decision.action !== 'create') await this.#notMigratableDisks(vm, progress);
      await this.#step(scope, decision, progress);
    } catch (err) {
      failure = err instanceof Error ? err : new Error('reconcile step failed', { cause: err });
    }
    const launcher = state.kind === 'active' ? this.#d.followers.latest(key, state.uid) : undefined;
    if (launcher?.phase === 'Running') progress.startFailure = undefined;
    const { reach, ha } = this.#haObservations(scope);
    const crashLoopUntil = crashLoopDeadline(progress.startFailure, now);
    const status = computeStatus({
      vm: { ...vm, status: previous },
      pod,
      podState: state,
      launcher,
      wantRunning: vm.metadata.deletionTimestamp === undefined && wantsRunning(vm, state),
      stopping: progress.stopping || vm.metadata.deletionTimestamp !== undefined,
      blocker: progress.blocker,
      notMigratable: [...progress.notMigratable, ...notMigratableTemplateReasons(vm)],
      crashLoopUntil,
      startFailure: progress.startFailure,
      restartCount: progress.restartCount,
      migration: scope.migration,
      // An HA replacement waiting for the lease is no migration: the VM shows its launcher's reachability.
      migrating: scope.handOver && !scope.haReplacing,
      reachability: reach,
      highAvailability: ha,
      now: rfc3339(now),
    });
    // A launcher pod created by this reconcile is not in the cache yet: the status written
    // now would say Scheduling without it, to be rewritten as soon as its watch event comes.
    if (!progress.created) await this.#d.statusWriter.write(vm, status, ctx.log);
    if (failure !== undefined) throw failure;
    return progress.requeueAfterMs === undefined ? {} : { requeueAfterMs: progress.requeueAfterMs };
  }

  /** Whether the launcher can be heard (status truth) and the HighAvailability condition (ADR 0064). */
  #haObservations(scope: Scope): { reach: Reachability | undefined; ha: ReturnType<typeof haCondition> } {
    const { key, vm, pod, state, now } = scope;
    const node = pod?.spec.nodeName === undefined ? undefined : this.#d.caches.nodes().find((n) => n.metadata.name === pod.spec.nodeName);
    const reach = state.kind === 'active' && !state.terminating ? reachability({ pod, node, silentMs: this.#d.followers.silentMs(key, state.uid) }) : undefined;
    const budget = this.#d.haBudget ?? DEFAULT_RESTART_BUDGET;
    const lease = vm.spec.highAvailability.enabled ? leaseDomainOf(vm, this.#d.disks) : undefined;
    const leaseless = state.kind === 'active' && lease !== undefined && !('problem' in lease) && !podKeepsLease(pod);
    const ha = haCondition(vm, lease !== undefined && 'problem' in lease ? lease.problem : undefined, budgetState(vm.metadata.annotations?.[ANNOTATION_HA_RESTARTS], now, budget), budget, leaseless);
    return { reach, ha };
  }

  async #step(scope: Scope, decision: Decision, out: StepOutcome): Promise<void> {
    const { ctx, key, vm, state, now } = scope;
    switch (decision.action) {
      case 'none':
        if (state.kind !== 'none' && state.terminating) {
          out.requeueAfterMs = STOP_POLL_MS;
          await this.#finishDeletion(scope);
        }
        return;
      case 'create': {
        // The finalizer's write (a VM's first start) runs beside the launcher's creation.
        const [finalizer, created] = await Promise.allSettled([scope.addFinalizer === true ? this.#addFinalizer(vm) : Promise.resolve(), this.#create(ctx, key, vm, out, now)]);
        for (const outcome of [created, finalizer]) {
          if (outcome.status === 'rejected') throw outcome.reason instanceof Error ? outcome.reason : new Error('launcher creation failed', { cause: outcome.reason });
        }
        return;
      }
      case 'stop':
        out.stopping = true;
        await this.#stopGracefully(scope, decision.uid, out);
        return;
      case 'delete': {
        if (decision.restartAfterFailure && state.kind === 'finished') {
          out.startFailure = countFailure(out.startFailure, state.finishedAt ?? rfc3339(now), now);
          const until = crashLoopDeadline(out.startFailure, now);
          if (until !== undefined) {
            out.requeueAfterMs = Date.parse(until) - now + 100;
            return;
          }
        }
        const restarting = vm.metadata.deletionTimestamp === undefined && (decision.restartAfterFailure || vm.spec.runStrategy === 'Always');
        if (restarting) out.restartCount = (out.restartCount ?? 0) + 1;
        await this.#d.launchers.deletePod(podRef(vm, scope.pod), decision.uid);
        this.#stops.delete(key);
        return;
      }
    }
  }

  /**
   * A pod whose containers have all exited but which stays terminating past a grace
   * (its node never confirmed the deletion) is removed with grace period 0: nothing of
   * it runs any more, and the VM must be able to start again.
   */
  async #finishDeletion(scope: Scope): Promise<void> {
    const { pod, state, vm, now, ctx } = scope;
    // deletionTimestamp is the end of the grace period; the deletion was asked for a grace period earlier.
    const since = Date.parse(pod?.metadata.deletionTimestamp ?? '') - (pod?.metadata.deletionGracePeriodSeconds ?? 0) * 1000;
    if (state.kind !== 'finished' || Number.isNaN(since) || now - since < FINISHED_POD_DELETE_GRACE_MS) return;
    ctx.log.warn('finished launcher pod still terminating; completing its deletion');
    await this.#d.launchers.deletePod(podRef(vm, pod), state.uid, true);
  }

  async #notMigratableDisks(vm: VirtualMachine, out: StepOutcome): Promise<void> {
    const resolution = await resolveDisks(vm, this.#d.disks);
    if (resolution.ok) out.notMigratable.push(...notMigratableDiskReasons(resolution.disks));
  }

  async #create(ctx: ReconcileContext, key: string, vm: VirtualMachine, out: StepOutcome, now: number): Promise<void> {
    const until = crashLoopDeadline(out.startFailure, now);
    if (until !== undefined) {
      out.requeueAfterMs = Date.parse(until) - now + 100;
      return;
    }
    // An HA VM holds a storage lease on its first disk's (posix) domain; without one it runs unprotected.
    const lease = vm.spec.highAvailability.enabled ? leaseDomainOf(vm, this.#d.disks) : undefined;
    const leaseDomain = lease === undefined || 'problem' in lease ? undefined : lease;
    const resolution = await resolveDisks(vm, this.#d.disks, { leaseDomain: leaseDomain?.domain });
    if (!resolution.ok) {
      const transient = resolution.problems.every((p) => p.transient);
      const first = resolution.problems[0];
      out.blocker = {
        phase: transient ? 'Scheduling' : 'Failed',
        reason: first?.reason ?? 'DiskNotReady',
        message: resolution.problems.map((p) => p.message).join('; '),
      };
      out.requeueAfterMs = transient ? 5000 : UNSCHEDULABLE_RETRY_MS;
      return;
    }
    out.notMigratable.push(...notMigratableDiskReasons(resolution.disks));
    const emulate = mayEmulate(vm, this.#d.settings);
    const resources = launcherResources(vm.spec.template, emulate);
    const pinned = [...new Set(resolution.disks.map((d) => d.nodeName).filter((n): n is string => n !== undefined))];
    if (pinned.length > 1) {
      out.blocker = { phase: 'Unschedulable', reason: 'Unschedulable', message: `the VM's local disks live on different nodes: ${pinned.join(', ')}` };
      return;
    }
    const placement = this.#d.placement.place(
      { vm, requests: resources.requests, allowEmulation: emulate, requiredNode: pinned[0] },
      this.#d.caches.nodes().filter((n) => !nodeFenced(n)),
      this.#d.caches.nodeUsage(),
    );
    if (placement.kind === 'Unschedulable') {
      out.blocker = { phase: 'Unschedulable', reason: 'Unschedulable', message: placement.message };
      out.requeueAfterMs = UNSCHEDULABLE_RETRY_MS;
      return;
    }
    let created: boolean;
    try {
      created = await this.#d.launchers.createLauncher(
        {
          vm,
          settings: this.#d.settings,
          affinity: placement.affinity,
          devices: placement.devices,
          disks: resolution.disks,
          lease: leaseDomain === undefined ? undefined : { domain: leaseDomain, nodeFenced: false },
        },
        ctx.log,
      );
    } catch (err) {
      if (!(err instanceof LauncherSecretNotOwnedError)) throw err;
      out.blocker = { phase: 'Failed', reason: 'LauncherSecretConflict', message: err.message };
      out.requeueAfterMs = UNSCHEDULABLE_RETRY_MS;
      return;
    }
    if (created) {
      out.created = true;
      this.#expected.set(key, this.#d.clock.now() + LAUNCHER_EXPECTATION_MS);
      ctx.log.info({ node: placement.node }, 'launcher pod created');
      await this.#d.events.record(this.#target(vm), { type: 'Normal', reason: 'LauncherCreated', action: 'Start', note: `launcher pod ${launcherPodName(vm.metadata.name)} placed on ${placement.node}` });
    }
  }

  async #stopGracefully(scope: Scope, podUid: string, out: StepOutcome): Promise<void> {
    const { ctx, key, vm, now } = scope;
    const ref = podRef(vm, scope.pod);
    let stop = this.#stops.get(key);
    if (stop?.podUid !== podUid) {
      stop = { podUid, at: now };
      this.#stops.set(key, stop);
      try {
        await this.#d.followers.action(key, podUid, 'shutdown', vm.spec.terminationGracePeriodSeconds);
        ctx.log.info('graceful guest shutdown requested');
      } catch (err) {
        ctx.log.info({ err }, 'launcher did not take the shutdown request; deleting its pod (it shuts the guest down on SIGTERM)');
        await this.#d.launchers.deletePod(ref, podUid);
        return;
      }
    }
    const launcher: LauncherStatus | undefined = this.#d.followers.latest(key, podUid);
    const guestGone = launcher?.phase === 'Stopped' || launcher?.phase === 'Failed';
    const deadline = stop.at + vm.spec.terminationGracePeriodSeconds * 1000 + STOP_EXTRA_GRACE_MS;
    if (guestGone || now >= deadline) {
      if (!guestGone) ctx.log.warn('guest did not stop within its grace period; deleting the launcher pod');
      await this.#d.launchers.deletePod(ref, podUid);
      return;
    }
    out.requeueAfterMs = STOP_POLL_MS;
  }
}

/** One reconcile's view of the world. */
interface Scope {
  ctx: ReconcileContext;
  key: string;
  vm: VirtualMachine;
  pod: Pod | undefined;
  state: LauncherPodState;
  now: number;
  /** The VM's newest migration, for status.migrationState. */
  migration: VirtualMachineMigration | undefined;
  /** A migration is handing the VM over to its target pod (or an HA replacement waits to take it over). */
  handOver: boolean;
  /** An HA replacement pod waits to take the VM over (ADR 0064). */
  haReplacing: boolean;
  /** The VM has no finalizer yet: it goes on beside the launcher's creation. */
  addFinalizer?: boolean | undefined;
}

/** The pod a decision is about: the selected launcher pod, else the VM's own launcher pod name. */
function podRef(vm: VirtualMachine, pod: Pod | undefined): { namespace: string | undefined; name: string } {
  return { namespace: vm.metadata.namespace, name: pod?.metadata.name ?? launcherPodName(vm.metadata.name) };
}

interface StepOutcome {
  blocker: StartBlocker | undefined;
  stopping: boolean;
  requeueAfterMs: number | undefined;
  notMigratable: NotMigratable[];
  startFailure: VirtualMachineStatus['startFailure'];
  restartCount: number | undefined;
  /** This reconcile created the launcher pod. */
  created: boolean;
}

function countFailure(previous: VirtualMachineStatus['startFailure'], finishedAt: string, now: number): NonNullable<VirtualMachineStatus['startFailure']> {
  if (previous?.lastFailedStartTime === finishedAt) return previous;
  const count = (previous?.consecutiveFailCount ?? 0) + 1;
  const base = Number.isNaN(Date.parse(finishedAt)) ? now : Date.parse(finishedAt);
  return { consecutiveFailCount: count, lastFailedStartTime: finishedAt, retryAfterTime: rfc3339(base + crashLoopDelayMs(count)) };
}

function crashLoopDeadline(failure: VirtualMachineStatus['startFailure'], now: number): string | undefined {
  const retry = failure?.retryAfterTime;
  if (retry === undefined) return undefined;
  return Date.parse(retry) > now ? retry : undefined;
}

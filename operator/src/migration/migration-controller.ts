// The VirtualMachineMigration controller: level-based. Each reconcile reads the
// migration, its VM, the source and target pods and what the two launchers say, takes
// at most one step of the phase machine (phases.ts), and writes the status. The target
// is a launcher pod named after the migration (ADR 0081); on success the target is
// promoted (its migration-target label removed) and becomes the VM's launcher; any
// failure or a deletion deletes the target and leaves the source running.
import type { MigrationPolicy, VirtualMachine, VirtualMachineMigration, VirtualMachineMigrationStatus } from '@keyvirt/crds';
import { LauncherHttpError, type MigrationResult } from '@keyvirt/launcher/api';
import type { Clock } from '../runtime/clock.ts';
import { isConflict } from '../runtime/kube-client.ts';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../runtime/controller.ts';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import { keyOf } from '../runtime/resource.ts';
import type { NodeUsageSource } from '../scheduler/node-usage-ledger.ts';
import type { DiskLookup } from '../vm/disk-volumes.ts';
import type { LauncherObjects } from '../vm/launcher-objects.ts';
import type { LauncherSettings } from '../vm/launcher-pod.ts';
import { selectLauncher } from '../vm/launcher-selection.ts';
import { LABEL_MIGRATION_TARGET, migrationTargetPodName } from '../vm/names.ts';
import type { PlacementDecider } from '../vm/placement.ts';
import { rfc3339 } from '../vm/vm-status.ts';
import type { MigrationLaunchers } from './migration-launchers.ts';
import { MigrationStatusWriter, progressOf, progressingCondition, resultFields, withPhase } from './migration-status.ts';
import { AdmissionLedger } from './admission-ledger.ts';
import { ACTIVE_PHASES, isFinal, pendingVerdict, podFacts, runStep, type RunStep, type SourceFacts, type TargetFacts } from './phases.ts';
import type { MigrationPolicySource } from './policy-source.ts';
import { placeTarget } from './target-placement.ts';
import { gatePostCopy, type PostCopyGate } from './post-copy-gate.ts';
import { mintMigrationCredentials, type MigrationCredentials } from './tls-credentials.ts';

/** Deleting a migration cancels it; the finalizer holds the object until the target is gone. */
export const MIGRATION_FINALIZER = 'keyvirt.io/migration-cleanup';

const POLL_MS = 1000;
const PENDING_RETRY_MS = 10_000;
const SCHEDULING_TIMEOUT_MS = 5 * 60_000;
const TARGET_START_TIMEOUT_MS = 5 * 60_000;
const TARGET_POD_APPEAR_MS = 30_000;
const VM_APPEAR_MS = 30_000;

/** A hand-over ends within seconds (the source pod exits): look again soon. */
function pendingRetryMs(reason: string): number {
  return reason === 'LauncherHandOver' ? POLL_MS * 2 : PENDING_RETRY_MS;
}

export interface MigrationCaches {
  migration(key: string): VirtualMachineMigration | undefined;
  migrations(): readonly VirtualMachineMigration[];
  vm(key: string): VirtualMachine | undefined;
  pod(key: string): Pod | undefined;
  podsOfVm(vm: VirtualMachine): readonly Pod[];
  nodes(): readonly Node[];
  /** What the cached pods ask of each node, for placing a target. */
  nodeUsage(): NodeUsageSource;
  policies(): readonly MigrationPolicy[];
  namespaceLabels(namespace: string): Record<string, string>;
}

/** Writes on objects the controller does not own the status of: finalizers, the target's promotion. */
export interface MigrationObjectWriter {
  patchMigration(m: VirtualMachineMigration, body: unknown): Promise<void>;
  /** Removes the migration-target label from the target pod (guarded by its UID). */
  promote(pod: Pod): Promise<void>;
}

/** What the controller asks of the two launchers (MigrationLaunchers in production). */
export type MigrationLauncherPort = Pick<
  MigrationLaunchers,
  'baseUrl' | 'cancelSource' | 'follow' | 'forget' | 'incoming' | 'latestProgress' | 'launcherStatus' | 'prepareIncoming' | 'sourceFacts' | 'startSource' | 'targetFacts'
>;

export interface MigrationControllerDeps {
  caches: MigrationCaches;
  launchers: MigrationLauncherPort;
  objects: Pick<LauncherObjects, 'createLauncher' | 'deletePod' | 'deleteTargetSecret'>;
  writer: MigrationObjectWriter;
  statusWriter: MigrationStatusWriter;
  placement: PlacementDecider;
  disks: DiskLookup;
  settings: LauncherSettings;
  policies: MigrationPolicySource;
  clock: Clock;
}

/** One reconcile's view. */
interface Scope {
  ctx: ReconcileContext;
  key: string;
  m: VirtualMachineMigration;
  vm: VirtualMachine | undefined;
  status: VirtualMachineMigrationStatus | undefined;
  deleting: boolean;
  now: number;
  source: Pod | undefined;
  target: Pod | undefined;
  targetName: string;
}

export class MigrationController implements Reconciler {
  readonly #d: MigrationControllerDeps;
  /**
   * TLS credentials per migration key (and the uid they were minted for), between
   * preparing the target and starting the source only: they live in memory and in the
   * two requests, never in the API (ADR 0081). Dropped when the source has them, when
   * the migration ends, and when it is gone.
   */
  readonly #credentials = new Map<string, { uid: string; credentials: MigrationCredentials }>();
  /** Admissions the cache does not show yet (admission-ledger.ts). */
  readonly #admissions = new AdmissionLedger();

  constructor(deps: MigrationControllerDeps) {
    this.#d = deps;
  }

  /** Per-migration state held in memory (what must not grow with every migration ever seen). */
  inMemory(): { statuses: number; credentials: number; admissions: number } {
    return { statuses: this.#d.statusWriter.remembered, credentials: this.#credentials.size, admissions: this.#admissions.size };
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const m = this.#d.caches.migration(key);
    if (m === undefined) {
      this.#d.launchers.forget(key);
      this.#d.statusWriter.forget(key);
      this.#credentials.delete(key);
      return {};
    }
    // The cache shows the migration past Pending: its admission counts from the cache now.
    if ((m.status?.phase ?? 'Pending') !== 'Pending') this.#admissions.forget(m.metadata.uid ?? '');
    return this.#step(this.#scope(ctx, key, m));
  }

  /** What one reconcile sees. */
  #scope(ctx: ReconcileContext, key: string, m: VirtualMachineMigration): Scope {
    const status = this.#d.statusWriter.current(m);
    const ns = m.metadata.namespace;
    const vm = this.#d.caches.vm(keyOf({ namespace: ns, name: m.spec.vmName }));
    // Operators sharing a cluster by VM selector see only the migrations labelled like their VMs, so a
    // migration in this cache is this operator's, and a VM missing from its cache does not exist.
    const targetName = migrationTargetPodName(m.spec.vmName, m.metadata.uid ?? '');
    return {
      ctx,
      key,
      m,
      vm,
      status,
      deleting: m.metadata.deletionTimestamp !== undefined || vm?.metadata.deletionTimestamp !== undefined,
      now: this.#d.clock.now(),
      source: status?.sourcePod === undefined ? undefined : this.#d.caches.pod(keyOf({ namespace: ns, name: status.sourcePod })),
      target: this.#d.caches.pod(keyOf({ namespace: ns, name: targetName })),
      targetName,
    };
  }

  async #step(s: Scope): Promise<ReconcileResult> {
    const { m } = s;
    const phase = s.status?.phase ?? 'Pending';
    if (isFinal(phase)) return this.#finish(s);
    if (s.deleting && (phase === 'Pending' || phase === 'Scheduling' || phase === 'PreparingTarget')) {
      return this.#end(s, 'Cancelled', 'Cancelled', 'the migration was deleted before the memory copy started; the VM runs on at the source');
    }
    if (m.metadata.deletionTimestamp === undefined && !(m.metadata.finalizers ?? []).includes(MIGRATION_FINALIZER)) {
      await this.#d.writer.patchMigration(m, { metadata: { finalizers: [...(m.metadata.finalizers ?? []), MIGRATION_FINALIZER] } });
      return {};
    }
    switch (phase) {
      case 'Pending':
        return this.#pending(s);
      case 'Scheduling':
        return this.#scheduling(s);
      case 'PreparingTarget':
        return this.#preparingTarget(s);
      case 'TargetReady':
      case 'Running':
        return this.#run(s);
      case 'Succeeded':
      case 'Failed':
      case 'Cancelled':
        return this.#finish(s);
    }
  }

  async #write(s: Scope, next: VirtualMachineMigrationStatus): Promise<void> {
    await this.#d.statusWriter.write(s.m, { ...next, observedGeneration: s.m.metadata.generation }, s.ctx.log);
    s.status = next;
  }

  #moving(s: Scope, phase: VirtualMachineMigrationStatus['phase'] & string, fields: Partial<VirtualMachineMigrationStatus>, reason: string, message: string): VirtualMachineMigrationStatus {
    const now = rfc3339(s.now);
    return { ...withPhase(s.status, phase, now), ...fields, conditions: progressingCondition(s.status?.conditions, { status: 'True', reason, message }, now, s.m.metadata.generation) };
  }

  async #wait(s: Scope, reason: string, message: string, requeueAfterMs: number): Promise<ReconcileResult> {
    const now = rfc3339(s.now);
    await this.#write(s, { ...withPhase(s.status, s.status?.phase ?? 'Pending', now), conditions: progressingCondition(s.status?.conditions, { status: 'False', reason, message }, now, s.m.metadata.generation) });
    return { requeueAfterMs };
  }

  #phaseAgeMs(s: Scope): number {
    const since = Date.parse(s.status?.phaseTransitionTime ?? '');
    return Number.isNaN(since) ? 0 : s.now - since;
  }

  /** Ends the migration in a final phase, then cleans up in the same reconcile. */
  async #end(s: Scope, phase: 'Succeeded' | 'Failed' | 'Cancelled', reason: string, message: string, result?: MigrationResult): Promise<ReconcileResult> {
    const now = rfc3339(s.now);
    await this.#write(s, {
      ...withPhase(s.status, phase, now),
      ...resultFields(result, s.status?.progress),
      endTime: now,
      ...(phase === 'Succeeded' ? {} : { failureReason: `${reason}: ${message}` }),
      conditions: progressingCondition(s.status?.conditions, { status: 'False', reason, message }, now, s.m.metadata.generation),
    });
    return this.#finish(s);
  }

  async #pending(s: Scope): Promise<ReconcileResult> {
    const { m, vm } = s;
    if (vm === undefined) {
      // The VM and the migration reach their caches through two informers: a VM applied with
      // its migration may not be in the cache yet.
      if (s.now - Date.parse(m.metadata.creationTimestamp ?? '') < VM_APPEAR_MS) return { requeueAfterMs: POLL_MS * 2 };
      return this.#end(s, 'Failed', 'VMNotFound', 'the VirtualMachine does not exist');
    }
    const selection = selectLauncher(vm, this.#d.caches.podsOfVm(vm));
    const launcher = selection.state.kind === 'active' && !selection.handOver ? selection.pod : undefined;
    const others = this.#d.caches.migrations().filter((o) => o.metadata.uid !== m.metadata.uid);
    const phases = new Map(others.map((o) => [o.metadata.uid, o.status?.phase ?? 'Pending']));
    // The cache's active migrations and those admitted here that it does not show yet;
    // nothing is awaited from here to the admission's record.
    const running = [
      ...others.filter((o) => ACTIVE_PHASES.includes(o.status?.phase ?? 'Pending')).map((o) => ({ sourceNode: o.status?.sourceNode ?? '' })),
      ...this.#admissions.others(m.metadata.uid ?? '', (uid) => phases.get(uid), s.now),
    ];
    const sourceNode = launcher?.spec.nodeName ?? '';
    const resolved = this.#resolve(s, vm);
    const verdict = pendingVerdict(
      { deleting: false, phase: vm.status?.phase, liveMigratable: vm.status?.conditions?.find((c) => c.type === 'LiveMigratable'), launcherActive: launcher !== undefined, handOver: selection.handOver },
      earlierMigrationOf(m, others)?.metadata.name,
      this.#d.policies.admit({ sourceNode }, running, resolved.limits),
    );
    if (verdict.kind === 'fail') return this.#end(s, 'Failed', verdict.reason, verdict.message);
    if (verdict.kind === 'wait') return this.#wait(s, verdict.reason, verdict.message, pendingRetryMs(verdict.reason));
    this.#admissions.admit(m.metadata.uid ?? '', sourceNode, s.now);
    try {
      await this.#write(
        s,
        this.#moving(s, 'Scheduling', { sourcePod: launcher?.metadata.name, sourceNode, ...(resolved.policyName === undefined ? {} : { policyName: resolved.policyName }) }, 'Scheduling', 'choosing a target node'),
      );
    } catch (err) {
      this.#admissions.forget(m.metadata.uid ?? '');
      throw err;
    }
    return {};
  }

  async #scheduling(s: Scope): Promise<ReconcileResult> {
    const { vm, m } = s;
    if (vm === undefined) return this.#end(s, 'Failed', 'VMNotFound', 'the VirtualMachine is gone');
    if (podFacts(s.source) !== 'running') return this.#end(s, 'Failed', 'SourceGone', `the source pod ${s.status?.sourcePod ?? ''} no longer runs`);
    if (s.target !== undefined) {
      await this.#write(s, this.#moving(s, 'PreparingTarget', { targetPod: s.targetName, targetNode: s.target.spec.nodeName ?? s.status?.targetNode }, 'PreparingTarget', 'the target launcher is starting'));
      return {};
    }
    const placed = await placeTarget({
      vm,
      migration: m,
      sourceNode: s.status?.sourceNode ?? '',
      settings: this.#d.settings,
      disks: this.#d.disks,
      placement: this.#d.placement,
      nodes: this.#d.caches.nodes(),
      usage: this.#d.caches.nodeUsage(),
    });
    if (placed.kind === 'problem') {
      if (!placed.transient || this.#phaseAgeMs(s) > SCHEDULING_TIMEOUT_MS) return this.#end(s, 'Failed', placed.reason, placed.message);
      return this.#wait(s, placed.reason, placed.message, PENDING_RETRY_MS);
    }
    const created = await this.#d.objects.createLauncher({ ...placed.input, migrationTarget: { podName: s.targetName, migrationUid: m.metadata.uid ?? '' } }, s.ctx.log);
    if (created) s.ctx.log.info({ node: placed.node, pod: s.targetName }, 'migration target pod created');
    await this.#write(s, this.#moving(s, 'PreparingTarget', { targetPod: s.targetName, targetNode: placed.node }, 'PreparingTarget', 'the target launcher is starting'));
    return {};
  }

  async #preparingTarget(s: Scope): Promise<ReconcileResult> {
    const { target, vm } = s;
    if (vm === undefined) return this.#end(s, 'Failed', 'VMNotFound', 'the VirtualMachine is gone');
    if (podFacts(s.source) !== 'running') return this.#end(s, 'Failed', 'SourceGone', `the source pod ${s.status?.sourcePod ?? ''} no longer runs`);
    const facts = podFacts(target);
    if (facts === 'none') {
      if (this.#phaseAgeMs(s) > TARGET_POD_APPEAR_MS) return this.#end(s, 'Failed', 'TargetPodGone', `the target pod ${s.targetName} does not exist`);
      return { requeueAfterMs: POLL_MS };
    }
    if (facts === 'finished' || facts === 'terminating') return this.#end(s, 'Failed', 'TargetFailed', `the target pod ${s.targetName} ended before the migration: ${terminationOf(target)}`);
    if (this.#phaseAgeMs(s) > TARGET_START_TIMEOUT_MS) return this.#end(s, 'Failed', 'TargetNotReady', `the target launcher was not ready within ${TARGET_START_TIMEOUT_MS / 1000} s`);
    if (facts !== 'running' || target?.status?.podIP === undefined) return { requeueAfterMs: POLL_MS };
    return this.#prepareIncoming(s, target, vm, target.status.podIP);
  }

  /** Asks the target to listen (once its QEMU waits with -incoming), then starts the source. */
  async #prepareIncoming(s: Scope, target: Pod, vm: VirtualMachine, podIP: string): Promise<ReconcileResult> {
    try {
      let incoming = await this.#d.launchers.incoming(target);
      if (incoming === undefined) {
        const launcher = await this.#d.launchers.launcherStatus(target);
        if (launcher.phase === 'Failed' || launcher.phase === 'Stopped') return await this.#end(s, 'Failed', 'TargetFailed', launcher.message ?? `the target launcher is ${launcher.phase}`);
        if (launcher.phase !== 'WaitingForMigration') return { requeueAfterMs: POLL_MS };
        const policy = this.#policy(s, vm);
        const uid = s.m.metadata.uid ?? '';
        const credentials = await mintMigrationCredentials({ vmNamespace: s.m.metadata.namespace ?? '', vmName: vm.metadata.name, migrationUid: uid, targetHost: podIP });
        this.#credentials.set(s.key, { uid, credentials });
        incoming = await this.#d.launchers.prepareIncoming(target, {
          address: podIP,
          postCopy: policy.postCopy,
          tls: { caCert: credentials.caCert, cert: credentials.server.cert, key: credentials.server.key },
        });
      }
      const notice = this.#postCopyGate(s, vm).notice;
      await this.#write(s, this.#moving(s, 'TargetReady', {}, 'TargetReady', `the target listens on ${incoming.host}:${incoming.port}${notice === undefined ? '' : `; ${notice}`}`));
      if (notice !== undefined) await this.#d.statusWriter.notice(s.m, 'PostCopyUnavailable', notice);
    } catch (err) {
      if (isConflict(err)) throw err;
      s.ctx.log.debug({ err }, 'target launcher not ready yet');
      return { requeueAfterMs: POLL_MS };
    }
    // Start the source in the same reconcile: the credentials exist only in this process.
    return this.#run(s);
  }

  #resolve(s: Scope, vm: VirtualMachine): ReturnType<MigrationPolicySource['resolve']> {
    return this.#d.policies.resolve({
      vm,
      namespaceLabels: this.#d.caches.namespaceLabels(s.m.metadata.namespace ?? ''),
      policies: this.#d.caches.policies(),
      overrides: s.m.spec.policyOverrides,
    });
  }

  /** The resolved policy, post-copy dropped unless the target node can receive it (docs/adr/0057). */
  #policy(s: Scope, vm: VirtualMachine): ReturnType<MigrationPolicySource['resolve']>['policy'] {
    return this.#postCopyGate(s, vm).policy;
  }

  #postCopyGate(s: Scope, vm: VirtualMachine): PostCopyGate<ReturnType<MigrationPolicySource['resolve']>['policy']> {
    return gatePostCopy(this.#resolve(s, vm).policy, s.status?.targetNode ?? s.target?.spec.nodeName, this.#d.caches.nodes(), vm.spec.highAvailability.enabled);
  }

  /** TargetReady and Running: start the source once, then follow it to the end. */
  async #run(s: Scope): Promise<ReconcileResult> {
    const { key, m, source, target } = s;
    const uid = m.metadata.uid ?? '';
    const sourceFacts: SourceFacts = await this.#d.launchers.sourceFacts(key, source, uid);
    if (s.status?.phase === 'TargetReady' && sourceFacts.kind === 'none' && !s.deleting) return this.#startSource(s);
    if (s.status?.phase === 'TargetReady' && (sourceFacts.kind === 'running' || sourceFacts.kind === 'ended')) {
      await this.#write(s, this.#moving(s, 'Running', { startTime: rfc3339(s.now), mode: 'PreCopy' }, 'Running', 'copying memory'));
    }
    if (sourceFacts.kind === 'running' && source !== undefined) this.#d.launchers.follow(key, source, uid);
    const targetFacts: TargetFacts = sourceFacts.kind === 'running' || sourceFacts.kind === 'ended' ? { kind: 'unreachable' } : await this.#d.launchers.targetFacts(target);
    const step = runStep({ deleting: s.deleting, sourcePod: podFacts(source), targetPod: podFacts(target), source: sourceFacts, target: targetFacts });
    return this.#take(s, step, sourceFacts.kind === 'ended' ? sourceFacts.result : undefined);
  }

  async #take(s: Scope, step: RunStep, result: MigrationResult | undefined): Promise<ReconcileResult> {
    const { key, m, source, target } = s;
    const uid = m.metadata.uid ?? '';
    switch (step.kind) {
      case 'succeeded':
        if (target !== undefined && target.metadata.labels?.[LABEL_MIGRATION_TARGET] !== undefined) await this.#d.writer.promote(target);
        s.ctx.log.info({ target: s.targetName }, 'migration succeeded; the target pod is the VM launcher now');
        return this.#end(s, 'Succeeded', 'Succeeded', `the VM runs in ${s.targetName}`, step.result);
      case 'failed':
        return this.#end(s, 'Failed', step.reason, step.message, result);
      case 'cancelled':
        return this.#end(s, 'Cancelled', 'Cancelled', step.message, result);
      case 'cancel-source':
        if (source !== undefined) {
          s.ctx.log.info({ why: step.why }, 'cancelling the migration at the source');
          await this.#d.launchers.cancelSource(source);
        }
        return { requeueAfterMs: POLL_MS / 2 };
      case 'running': {
        const progress = this.#d.launchers.latestProgress(key);
        if (progress !== undefined && progress.migrationId === uid) {
          const next = progressOf(progress, s.now);
          await this.#write(s, { ...(s.status ?? {}), progress: next, mode: next.mode ?? 'PreCopy' });
        }
        return { requeueAfterMs: POLL_MS };
      }
      case 'wait':
        s.ctx.log.debug({ why: step.message }, 'migration outcome not known yet');
        return { requeueAfterMs: POLL_MS };
    }
  }

  async #startSource(s: Scope): Promise<ReconcileResult> {
    const { source, target, vm } = s;
    if (vm === undefined) return this.#end(s, 'Failed', 'VMNotFound', 'the VirtualMachine is gone');
    if (source === undefined || podFacts(source) !== 'running') return this.#end(s, 'Failed', 'SourceGone', `the source pod ${s.status?.sourcePod ?? ''} no longer runs`);
    if (target === undefined || podFacts(target) !== 'running') return this.#end(s, 'Failed', 'TargetFailed', `the target pod ${s.targetName} no longer runs: ${terminationOf(target)}`);
    return this.#startSourceOn(s, vm, source, target);
  }

  async #startSourceOn(s: Scope, vm: VirtualMachine, source: Pod, target: Pod): Promise<ReconcileResult> {
    const { m } = s;
    const incoming = await this.#d.launchers.incoming(target).catch(() => undefined);
    if (incoming?.phase !== 'Listening') {
      if (incoming?.phase === 'Failed') return this.#end(s, 'Failed', 'TargetFailed', incoming.message ?? 'the target stopped listening');
      return { requeueAfterMs: POLL_MS };
    }
    const held = this.#credentials.get(s.key);
    const credentials = held?.uid === (m.metadata.uid ?? '') ? held.credentials : undefined;
    if (credentials === undefined) {
      return this.#end(s, 'Failed', 'CredentialsLost', 'the operator restarted after preparing the target and before starting the source; the target holds TLS credentials no one else has (create the migration again)');
    }
    try {
      await this.#d.launchers.startSource(source, {
        migrationId: m.metadata.uid ?? '',
        target: { host: incoming.host, port: incoming.port, launcherUrl: await this.#d.launchers.baseUrl(target) },
        policy: this.#policy(s, vm),
        tls: { caCert: credentials.caCert, cert: credentials.client.cert, key: credentials.client.key, hostname: credentials.tlsHostname },
      });
    } catch (err) {
      if (err instanceof LauncherHttpError && (err.status === 409 || err.status === 400)) return this.#end(s, 'Failed', 'SourceRefused', err.message);
      throw err;
    }
    this.#credentials.delete(s.key);
    s.ctx.log.info({ target: `${incoming.host}:${incoming.port}` }, 'migration started at the source');
    await this.#write(s, this.#moving(s, 'Running', { startTime: rfc3339(s.now), mode: 'PreCopy' }, 'Running', 'copying memory'));
    this.#d.launchers.follow(s.key, source, m.metadata.uid ?? '');
    return { requeueAfterMs: POLL_MS };
  }

  /** A final phase: the loser of the two pods goes, the target's Secret goes, the finalizer goes. */
  async #finish(s: Scope): Promise<ReconcileResult> {
    const { m } = s;
    const requeue = await this.#removeLoser(s);
    await this.#d.objects.deleteTargetSecret({ namespace: m.metadata.namespace, name: s.targetName });
    // The status writer keeps the final status until the cache shows it (a stale view must not run a phase again).
    this.#d.launchers.forget(s.key);
    this.#credentials.delete(s.key);
    const finalizers = m.metadata.finalizers ?? [];
    if (finalizers.includes(MIGRATION_FINALIZER)) {
      await this.#d.writer.patchMigration(m, { metadata: { finalizers: finalizers.filter((f) => f !== MIGRATION_FINALIZER) } });
    }
    return requeue ? { requeueAfterMs: POLL_MS * 2 } : {};
  }

  /** Succeeded: the target promoted, the finished source deleted. Otherwise: the target deleted. True: look again. */
  async #removeLoser(s: Scope): Promise<boolean> {
    const { m, target, source } = s;
    let requeue = false;
    if (s.status?.phase === 'Succeeded') {
      if (target !== undefined && target.metadata.labels?.[LABEL_MIGRATION_TARGET] !== undefined) await this.#d.writer.promote(target);
      if (source !== undefined && source.metadata.uid !== target?.metadata.uid) {
        if (podFacts(source) === 'finished') await this.#d.objects.deletePod({ namespace: source.metadata.namespace, name: source.metadata.name }, source.metadata.uid ?? '');
        else if (podFacts(source) !== 'terminating') requeue = true;
      }
    } else if (target !== undefined && target.metadata.labels?.[LABEL_MIGRATION_TARGET] === m.metadata.uid && target.metadata.deletionTimestamp === undefined) {
      await this.#d.objects.deletePod({ namespace: target.metadata.namespace, name: target.metadata.name }, target.metadata.uid ?? '');
      s.ctx.log.info({ target: s.targetName }, 'migration target pod deleted');
    }
    return requeue;
  }
}

/** An unfinished migration of the same VM that comes first: created earlier, or already past Pending. */
function earlierMigrationOf(m: VirtualMachineMigration, others: readonly VirtualMachineMigration[]): VirtualMachineMigration | undefined {
  const created = m.metadata.creationTimestamp ?? '';
  return others.find(
    (o) =>
      o.metadata.namespace === m.metadata.namespace &&
      o.spec.vmName === m.spec.vmName &&
      !isFinal(o.status?.phase) &&
      ((o.metadata.creationTimestamp ?? '') < created ||
        (o.metadata.creationTimestamp === created && o.metadata.name < m.metadata.name) ||
        ACTIVE_PHASES.includes(o.status?.phase ?? 'Pending')),
  );
}

function terminationOf(pod: Pod | undefined): string {
  const term = pod?.status?.containerStatuses?.[0]?.state?.terminated;
  if (term === undefined) return pod?.status?.message ?? 'no details';
  return `exit code ${term.exitCode}${term.reason === undefined ? '' : ` (${term.reason})`}${term.message === undefined ? '' : `: ${term.message.slice(0, 300)}`}`;
}

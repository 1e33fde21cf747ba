// The StorageDomain controller: keeps the backing volume, measures the domain on a
// node, creates and deletes the VM disk images on it with short-lived job pods,
// moves it through Activating → Active → PreparingForMaintenance → Maintenance, and
// holds its finalizer while disks remain. Level-based: each reconcile reads the
// domain, the VMs that use it and its job pods, and acts on the difference.
import { API_VERSION, parseQuantity, type StorageDomain, type StorageDomainStatus, type VirtualMachine } from '@keyvirt/crds';
import type { Logger } from 'pino';
import type { Clock } from '../runtime/clock.ts';
import type { ReconcileContext, Reconciler, ReconcileResult } from '../runtime/controller.ts';
import type { Pod } from '../runtime/core-schemas.ts';
import type { EventSink } from '../runtime/event-recorder.ts';
import { isConflict, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { controllerReference } from '../runtime/owner-mapping.ts';
import { objectPath } from '../runtime/resource.ts';
import { guardedStatusPatch, resourceVersionOf, sameStatus } from '../runtime/status-patch.ts';
import { storageDomainType } from '../vm/names.ts';
import { BackingVolumeError, planBackingVolume, type BackingVolumePlan, type OwnerRef } from './backing-volume.ts';
import { deleteBackingVolume, syncBackingVolume } from './backing-volume-sync.ts';
import type { HoldReason, ListedDisk } from './disk-retention.ts';
import { DiskSync } from './disk-sync.ts';
import { usesDomain, vmIsRunning } from './domain-disks.ts';
import { DomainJobs } from './domain-jobs.ts';
import type { DomainMemory, Pass } from './domain-pass.ts';
import { capacityFromStatus, domainStatus, type BackingState, type RefusedDisk } from './domain-status.ts';
import { probePodName, STORAGE_DOMAIN_FINALIZER } from './names.ts';
import { recordTransitions } from './status-events.ts';

export interface StorageCaches {
  domain(name: string): StorageDomain | undefined;
  vms(): readonly VirtualMachine[];
  /** Storage job pods in the jobs namespace. */
  jobPods(): readonly Pod[];
}

export interface StorageSettings {
  /** The operator's namespace: controller-owned claims and storage jobs live here. */
  readonly namespace: string;
  /** The image storage jobs run (the launcher image: it has qemu-img). */
  readonly image: string;
  readonly imagePullPolicy?: string | undefined;
  /** How often an Active domain is measured again. */
  readonly probeIntervalMs: number;
  /** How long a failed job is left before it is tried again. */
  readonly retryAfterFailureMs: number;
}

export interface StorageDomainControllerDeps {
  readonly caches: StorageCaches;
  readonly client: Pick<KubeClient, 'get' | 'request' | 'create' | 'patch' | 'delete'>;
  readonly events: EventSink;
  readonly clock: Clock;
  readonly settings: StorageSettings;
}

/** Why a job pod is still Pending: the scheduler's or the kubelet's message. */
function pendingReason(pod: Pod | undefined): string | undefined {
  if (pod?.status?.phase !== 'Pending') return undefined;
  const scheduled = pod.status.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') return `the probe pod cannot be scheduled: ${scheduled.message ?? scheduled.reason ?? 'no reason given'}`;
  const waiting = pod.status.containerStatuses?.[0]?.state?.waiting;
  if (waiting?.reason !== undefined) return `the probe pod is waiting: ${waiting.reason}${waiting.message === undefined ? '' : ` (${waiting.message})`}`;
  return pod.status.message === undefined ? undefined : `the probe pod is pending: ${pod.status.message}`;
}

export class StorageDomainController implements Reconciler {
  readonly #d: StorageDomainControllerDeps;
  readonly #memory = new Map<string, DomainMemory>();
  readonly #jobs: DomainJobs;
  readonly #disks: DiskSync;

  constructor(deps: StorageDomainControllerDeps) {
    this.#d = deps;
    this.#jobs = new DomainJobs({ client: deps.client, jobPods: () => deps.caches.jobPods(), trustedNamespace: deps.settings.namespace });
    this.#disks = new DiskSync({
      client: deps.client,
      events: deps.events,
      jobs: this.#jobs,
      image: deps.settings.image,
      imagePullPolicy: deps.settings.imagePullPolicy,
      retryAfterFailureMs: deps.settings.retryAfterFailureMs,
    });
  }

  /** Listed disks no cached VM wants that are kept, per domain and reason (a gauge). */
  heldDeletions(): Map<string, Map<HoldReason, number>> {
    const out = new Map<string, Map<HoldReason, number>>();
    for (const [domain, memory] of this.#memory) {
      const counts = new Map<HoldReason, number>();
      for (const reason of memory.held.values()) counts.set(reason, (counts.get(reason) ?? 0) + 1);
      out.set(domain, counts);
    }
    return out;
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const sd = this.#d.caches.domain(key);
    if (sd === undefined) {
      this.#memory.delete(key);
      return {};
    }
    const memory = this.#remember(sd);
    const deleting = sd.metadata.deletionTimestamp !== undefined;
    if (!deleting && !(sd.metadata.finalizers ?? []).includes(STORAGE_DOMAIN_FINALIZER)) {
      await this.#patchDomain(sd, { metadata: { finalizers: [...(sd.metadata.finalizers ?? []), STORAGE_DOMAIN_FINALIZER], resourceVersion: sd.metadata.resourceVersion } }, ctx.signal);
    }
    const owner = controllerReference(storageDomainType, sd);
    const { plan, backing } = await this.#ensureBacking(sd, owner, ctx.signal);
    const now = this.#d.clock.now();
    const measurable = plan?.claimRef !== undefined;
    const pass: Pass | undefined = plan === undefined ? undefined : { sd, plan, owner, memory, now, ctx };
    let requeueAfterMs: number | undefined;
    if (backing.state === 'ready' && pass !== undefined && measurable) requeueAfterMs = await this.#probe(pass);
    const vms = this.#d.caches.vms().filter((vm) => usesDomain(vm, sd.metadata.name));
    const { disks, refused } = await this.#syncDisks(sd, vms, backing.state === 'ready' ? pass : undefined);
    const status = domainStatus(sd, {
      backing,
      capacity: memory.capacity,
      probed: memory.probed,
      probeWaiting: memory.probeWaiting,
      measurable,
      runningVms: vms.filter(vmIsRunning).map((vm) => `${vm.metadata.namespace ?? 'default'}/${vm.metadata.name}`),
      vms: vms.map((vm) => `${vm.metadata.namespace ?? 'default'}/${vm.metadata.name}`),
      disks,
      refused,
      deleting,
      now: new Date(now),
    });
    await this.#writeStatus(sd, memory, status, ctx.log);
    if (deleting && disks.length === 0 && vms.length === 0) {
      await this.#release(sd, plan, ctx);
      return {};
    }
    const retry = [...memory.failures.values()].map((t) => t + this.#d.settings.retryAfterFailureMs - now).filter((ms) => ms > 0);
    // Claims binding and StorageClasses appearing are not watched: look again soon.
    const backingWait = backing.state === 'waiting' ? 2000 : backing.state === 'error' ? this.#d.settings.retryAfterFailureMs : undefined;
    const candidates = [requeueAfterMs, backingWait, ...retry].filter((ms): ms is number => ms !== undefined);
    return candidates.length === 0 ? {} : { requeueAfterMs: Math.max(1000, Math.min(...candidates)) };
  }

  async #ensureBacking(sd: StorageDomain, owner: OwnerRef, signal: AbortSignal): Promise<{ plan: BackingVolumePlan | undefined; backing: BackingState }> {
    try {
      const plan = planBackingVolume(sd, this.#d.settings.namespace, owner);
      const storageClass = sd.spec.type === 'storageClass' ? sd.spec.storageClass?.name : undefined;
      return { plan, backing: await syncBackingVolume(this.#d.client, plan, storageClass, signal) };
    } catch (err) {
      if (!(err instanceof BackingVolumeError)) throw err;
      return { plan: undefined, backing: { state: 'error', reason: 'InvalidSpec', message: err.message } };
    }
  }

  /** The last disk is gone: remove the backing objects and let the domain go. */
  async #release(sd: StorageDomain, plan: BackingVolumePlan | undefined, ctx: ReconcileContext): Promise<void> {
    if (plan !== undefined) await deleteBackingVolume(this.#d.client, plan, ctx.signal);
    const finalizers = (sd.metadata.finalizers ?? []).filter((f) => f !== STORAGE_DOMAIN_FINALIZER);
    await this.#patchDomain(sd, { metadata: { finalizers, resourceVersion: sd.metadata.resourceVersion } }, ctx.signal);
    ctx.log.info('no disks left, finalizer released');
    this.#memory.delete(sd.metadata.name);
  }

  #remember(sd: StorageDomain): DomainMemory {
    const existing = this.#memory.get(sd.metadata.name);
    if (existing !== undefined) return existing;
    const fresh: DomainMemory = {
      lastProbeMs: 0,
      probed: sd.status?.phase !== undefined && !['Pending', 'Activating', 'Error'].includes(sd.status.phase),
      capacity: capacityFromStatus(sd.status, parseQuantity),
      failures: new Map(),
      probeWaiting: undefined,
      written: undefined,
      held: new Map(),
      refused: new Map(),
    };
    this.#memory.set(sd.metadata.name, fresh);
    return fresh;
  }

  /** Measures the domain every probe interval; returns when to look again. */
  async #probe(pass: Pass): Promise<number | undefined> {
    const { sd, memory, now, ctx, plan } = pass;
    const name = probePodName(sd.metadata.name);
    const claim = plan.claimRef;
    if (claim === undefined) return undefined;
    const run = await this.#jobs.find({ namespace: claim.namespace, name, domainUid: pass.owner.uid }, ctx.signal);
    memory.probeWaiting = run.outcome?.state === 'running' ? pendingReason(run.pod) : undefined;
    if (run.outcome?.state === 'running') return undefined;
    if (run.outcome?.state === 'succeeded') {
      if (run.outcome.result !== undefined) memory.capacity = run.outcome.result;
      else ctx.log.warn({ job: name }, 'capacity probe reported nothing (no termination message)');
      memory.probed = true;
      memory.lastProbeMs = now;
      memory.failures.delete(name);
      if (run.pod !== undefined) await this.#jobs.remove(run.pod, ctx.signal);
    } else if (run.outcome?.state === 'failed') {
      ctx.log.warn({ job: name, message: run.outcome.message }, 'capacity probe failed');
      await this.#d.events.record(this.#target(sd), { type: 'Warning', reason: 'ProbeFailed', action: 'Probe', note: run.outcome.message });
      memory.failures.set(name, now);
      if (run.pod !== undefined) await this.#jobs.remove(run.pod, ctx.signal);
    }
    const failedAt = memory.failures.get(name);
    if (failedAt !== undefined && now - failedAt < this.#d.settings.retryAfterFailureMs) return undefined;
    const due = memory.lastProbeMs + this.#d.settings.probeIntervalMs - now;
    if (memory.probed && due > 0) return due;
    await this.#jobs.start(
      {
        name,
        namespace: claim.namespace,
        domain: sd.metadata.name,
        claimName: claim.name,
        image: this.#d.settings.image,
        imagePullPolicy: this.#d.settings.imagePullPolicy,
        owner: pass.owner,
        operation: { op: 'probe' },
        nodeName: plan.nodeName,
      },
      ctx.signal,
    );
    return this.#d.settings.probeIntervalMs;
  }

  /** Deletes the images whose VM is gone, creates the admitted ones; returns what the domain holds. `pass` is absent while the volume is not ready. */
  async #syncDisks(sd: StorageDomain, vms: readonly VirtualMachine[], pass: Pass | undefined): Promise<{ disks: ListedDisk[]; refused: RefusedDisk[] }> {
    const memory = this.#remember(sd);
    const current = this.#currentStatus(sd, memory);
    const listed: ListedDisk[] = current?.disks ?? [];
    if (pass === undefined) return { disks: [...listed], refused: current?.refusedDisks ?? [] };
    const result = await this.#disks.sync(pass, vms, listed);
    return {
      disks: result.disks,
      refused: result.refused.map((r) => ({ namespace: r.disk.namespace, vmName: r.disk.vmName, diskName: r.disk.diskName, reason: r.reason, message: r.message })),
    };
  }

  async #patchDomain(sd: StorageDomain, body: unknown, signal: AbortSignal): Promise<void> {
    try {
      await this.#d.client.patch(objectPath(storageDomainType, { name: sd.metadata.name }), body, 'merge', signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  #target(sd: StorageDomain): { apiVersion: string; kind: string; metadata: StorageDomain['metadata'] } {
    return { apiVersion: API_VERSION, kind: 'StorageDomain', metadata: sd.metadata };
  }

  /** The freshest status: what this operator wrote last until the cache shows it. */
  #currentStatus(sd: StorageDomain, memory: DomainMemory): StorageDomainStatus | undefined {
    if (memory.written !== undefined && sameStatus(memory.written, sd.status)) memory.written = undefined;
    return memory.written ?? sd.status;
  }

  async #writeStatus(sd: StorageDomain, memory: DomainMemory, next: StorageDomainStatus, log: Logger): Promise<void> {
    const previous = this.#currentStatus(sd, memory);
    if (sameStatus(previous, next)) return;
    // Guarded by the version the status was computed from (ADR 0102): a stale write gets 409.
    const version = memory.written === undefined ? sd.metadata.resourceVersion : (memory.writtenResourceVersion ?? sd.metadata.resourceVersion);
    let answer: unknown;
    try {
      answer = await this.#d.client.patch(objectPath(storageDomainType, { name: sd.metadata.name }, 'status'), guardedStatusPatch(next, version), 'json');
    } catch (err) {
      if (isNotFound(err)) return;
      if (isConflict(err)) memory.written = undefined;
      throw err;
    }
    memory.written = next;
    memory.writtenResourceVersion = resourceVersionOf(answer);
    await recordTransitions(this.#d.events, this.#target(sd), previous, next, log);
  }
}

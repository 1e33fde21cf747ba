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
import { isAlreadyExists, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { controllerReference } from '../runtime/owner-mapping.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import { storageDomainType } from '../vm/names.ts';
import { BackingVolumeError, perDiskClaim, planBackingVolume, type BackingVolumePlan, type OwnerRef } from './backing-volume.ts';
import { createIfMissing, deleteBackingVolume, syncBackingVolume } from './backing-volume-sync.ts';
import { diskImageBase, usesDomain, vmIsRunning, wantedDisks, type WantedDisk } from './domain-disks.ts';
import { capacityFromStatus, domainStatus, isCritical, type BackingState, type Capacity, type DomainDisk } from './domain-status.ts';
import { diskClaimName, diskJobPodName, diskKey, probePodName, STORAGE_DOMAIN_FINALIZER, type DiskRef } from './names.ts';
import { recordTransitions } from './status-events.ts';
import { jobOutcome, storageJobPod, type StorageJobOperation } from './storage-job.ts';

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
  readonly client: Pick<KubeClient, 'get' | 'create' | 'patch' | 'delete'>;
  readonly events: EventSink;
  readonly clock: Clock;
  readonly settings: StorageSettings;
}

interface DomainMemory {
  lastProbeMs: number;
  /** A job mounted the volume and finished since the operator started (or status shows an earlier one). */
  probed: boolean;
  capacity: Capacity | undefined;
  /** Job name → when it last failed (ms). */
  failures: Map<string, number>;
  /** Why the probe pod has not run yet (unschedulable, waiting), for the Mounted condition. */
  probeWaiting: string | undefined;
  written: StorageDomainStatus | undefined;
}

/** What one reconcile of one domain works with. */
interface Pass {
  readonly sd: StorageDomain;
  readonly plan: BackingVolumePlan;
  readonly owner: OwnerRef;
  readonly memory: DomainMemory;
  readonly now: number;
  readonly ctx: ReconcileContext;
}

interface JobRun {
  readonly pod: Pod | undefined;
  readonly outcome: ReturnType<typeof jobOutcome> | undefined;
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

function stable(status: StorageDomainStatus | undefined): string {
  return JSON.stringify(status ?? {});
}

export class StorageDomainController implements Reconciler {
  readonly #d: StorageDomainControllerDeps;
  readonly #memory = new Map<string, DomainMemory>();

  constructor(deps: StorageDomainControllerDeps) {
    this.#d = deps;
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
    const disks = await this.#syncDisks(sd, vms, backing.state === 'ready' ? pass : undefined);
    const status = domainStatus(sd, {
      backing,
      capacity: memory.capacity,
      probed: memory.probed,
      probeWaiting: memory.probeWaiting,
      measurable,
      runningVms: vms.filter(vmIsRunning).map((vm) => `${vm.metadata.namespace ?? 'default'}/${vm.metadata.name}`),
      vms: vms.map((vm) => `${vm.metadata.namespace ?? 'default'}/${vm.metadata.name}`),
      disks,
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
    };
    this.#memory.set(sd.metadata.name, fresh);
    return fresh;
  }

  #jobPod(name: string): JobRun {
    const pod = this.#d.caches.jobPods().find((p) => p.metadata.name === name);
    return { pod, outcome: pod === undefined ? undefined : jobOutcome(pod) };
  }

  /** Measures the domain every probe interval; returns when to look again. */
  async #probe(pass: Pass): Promise<number | undefined> {
    const { sd, memory, now, ctx } = pass;
    const name = probePodName(sd.metadata.name);
    const run = this.#jobPod(name);
    memory.probeWaiting = run.outcome?.state === 'running' ? pendingReason(run.pod) : undefined;
    if (run.outcome?.state === 'running') return undefined;
    if (run.outcome?.state === 'succeeded') {
      if (run.outcome.result !== undefined) memory.capacity = run.outcome.result;
      else ctx.log.warn({ job: name }, 'capacity probe reported nothing (no termination message)');
      memory.probed = true;
      memory.lastProbeMs = now;
      memory.failures.delete(name);
      await this.#deletePod(name, ctx.signal);
    } else if (run.outcome?.state === 'failed') {
      ctx.log.warn({ job: name, message: run.outcome.message }, 'capacity probe failed');
      await this.#d.events.record(this.#target(sd), { type: 'Warning', reason: 'ProbeFailed', action: 'Probe', note: run.outcome.message });
      memory.failures.set(name, now);
      await this.#deletePod(name, ctx.signal);
    }
    const failedAt = memory.failures.get(name);
    if (failedAt !== undefined && now - failedAt < this.#d.settings.retryAfterFailureMs) return undefined;
    const due = memory.lastProbeMs + this.#d.settings.probeIntervalMs - now;
    if (memory.probed && due > 0) return due;
    await this.#startJob(pass, name, { op: 'probe' }, undefined);
    return this.#d.settings.probeIntervalMs;
  }

  /** Creates wanted disks, deletes unwanted ones; returns the disks the domain holds. `pass` is absent while the volume is not ready. */
  async #syncDisks(sd: StorageDomain, vms: readonly VirtualMachine[], pass: Pass | undefined): Promise<DomainDisk[]> {
    const memory = this.#remember(sd);
    const current = this.#currentStatus(sd, memory);
    const listed = new Map((current?.disks ?? []).map((d): [string, DomainDisk] => [diskKey(d), d]));
    if (pass === undefined) return [...listed.values()];
    const wanted = wantedDisks(vms, sd.metadata.name);
    const measured = pass.plan.claimRef === undefined || memory.probed;
    const accepting = !sd.spec.maintenance && sd.metadata.deletionTimestamp === undefined && measured && !isCritical(sd, memory.capacity);
    for (const disk of wanted.values()) {
      if (listed.has(diskKey(disk)) || !accepting) continue;
      const operation: StorageJobOperation = { op: 'create', image: disk.image, format: disk.format, sizeBytes: disk.sizeBytes, backing: disk.backing };
      if (pass.plan.claimRef === undefined) await this.#ensureDiskClaim(pass, disk);
      if (await this.#runDiskJob(pass, disk, operation)) {
        listed.set(diskKey(disk), { namespace: disk.namespace, vmName: disk.vmName, diskName: disk.diskName, size: disk.size });
      }
    }
    for (const [key, disk] of listed) {
      if (wanted.has(key)) continue;
      if (pass.plan.claimRef === undefined) {
        // A disk of its own claim: deleting the claim deletes the disk (the class's reclaim policy decides the data).
        await this.#deleteDiskClaim(pass, disk);
        listed.delete(key);
        continue;
      }
      // The format is not recorded in status: the job removes the image in either format.
      if (await this.#runDiskJob(pass, disk, { op: 'delete', image: diskImageBase(disk) })) listed.delete(key);
    }
    return [...listed.values()];
  }

  /** Drives one disk job; true once it has succeeded (its pod is then removed). */
  async #runDiskJob(pass: Pass, disk: DomainDisk, operation: StorageJobOperation): Promise<boolean> {
    const { sd, memory, now, ctx } = pass;
    const kind = operation.op === 'delete' ? 'delete' : 'create';
    const name = diskJobPodName(kind, sd.metadata.name, disk);
    const run = this.#jobPod(name);
    switch (run.outcome?.state) {
      case 'running':
        return false;
      case 'succeeded':
        if (run.outcome.result !== undefined) memory.capacity = run.outcome.result;
        memory.probed = true;
        memory.failures.delete(name);
        await this.#deletePod(name, ctx.signal);
        ctx.log.info({ disk: diskKey(disk), op: operation.op }, 'disk job succeeded');
        return true;
      case 'failed':
        await this.#d.events.record(this.#target(sd), {
          type: 'Warning',
          reason: kind === 'create' ? 'DiskCreateFailed' : 'DiskDeleteFailed',
          action: kind === 'create' ? 'CreateDisk' : 'DeleteDisk',
          note: `disk ${diskKey(disk)}: ${run.outcome.message}`,
        });
        memory.failures.set(name, now);
        await this.#deletePod(name, ctx.signal);
        return false;
      case undefined: {
        const failedAt = memory.failures.get(name);
        if (failedAt !== undefined && now - failedAt < this.#d.settings.retryAfterFailureMs) return false;
        await this.#startJob(pass, name, operation, disk);
        return false;
      }
    }
  }

  /** Where a job for `disk` mounts the domain: the domain's claim, or the disk's own claim on storageClass domains. */
  #jobVolume(pass: Pass, disk: DiskRef | undefined): { namespace: string; claimName: string; nodeName?: string | undefined } | undefined {
    const claim = pass.plan.claimRef;
    if (claim !== undefined) return { namespace: claim.namespace, claimName: claim.name, nodeName: pass.plan.nodeName };
    return disk === undefined ? undefined : { namespace: disk.namespace, claimName: diskClaimName(disk) };
  }

  async #startJob(pass: Pass, name: string, operation: StorageJobOperation, disk: DiskRef | undefined): Promise<void> {
    const { sd, owner } = pass;
    const volume = this.#jobVolume(pass, disk);
    if (volume === undefined) return;
    const pod = storageJobPod({
      name,
      namespace: volume.namespace,
      domain: sd.metadata.name,
      claimName: volume.claimName,
      image: this.#d.settings.image,
      imagePullPolicy: this.#d.settings.imagePullPolicy,
      owner,
      operation,
      nodeName: volume.nodeName,
      disk: disk === undefined ? undefined : diskKey(disk),
    });
    try {
      await this.#d.client.create(collectionPath(coreTypes.pod, volume.namespace), pod, pass.ctx.signal);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  async #ensureDiskClaim(pass: Pass, disk: WantedDisk): Promise<void> {
    const claimName = diskClaimName(disk);
    const ref = { namespace: disk.namespace, name: claimName };
    const body = perDiskClaim(pass.sd, { namespace: disk.namespace, claimName, sizeBytes: disk.sizeBytes }, pass.owner);
    await createIfMissing(this.#d.client, collectionPath(coreTypes.persistentVolumeClaim, disk.namespace), objectPath(coreTypes.persistentVolumeClaim, ref), body, pass.ctx.signal);
  }

  async #deleteDiskClaim(pass: Pass, disk: DiskRef): Promise<void> {
    try {
      await this.#d.client.delete(objectPath(coreTypes.persistentVolumeClaim, { namespace: disk.namespace, name: diskClaimName(disk) }), undefined, pass.ctx.signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async #deletePod(name: string, signal: AbortSignal): Promise<void> {
    const pod = this.#d.caches.jobPods().find((p) => p.metadata.name === name);
    const namespace = pod?.metadata.namespace ?? this.#d.settings.namespace;
    try {
      await this.#d.client.delete(objectPath(coreTypes.pod, { namespace, name }), { gracePeriodSeconds: 0 }, signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
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
    if (memory.written !== undefined && stable(memory.written) === stable(sd.status)) memory.written = undefined;
    return memory.written ?? sd.status;
  }

  async #writeStatus(sd: StorageDomain, memory: DomainMemory, next: StorageDomainStatus, log: Logger): Promise<void> {
    const previous = this.#currentStatus(sd, memory);
    if (stable(previous) === stable(next)) return;
    try {
      await this.#d.client.patch(objectPath(storageDomainType, { name: sd.metadata.name }, 'status'), [{ op: 'add', path: '/status', value: next }], 'json');
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    memory.written = next;
    await recordTransitions(this.#d.events, this.#target(sd), previous, next, log);
  }
}

// The VirtualMachineImage controller: imports an image onto its StorageDomain with one
// storage job pod (import-job.ts), follows the job's progress, writes the outcome to
// status, and on deletion removes the file with a second job before it lets the image
// go (finalizer). Level-based: each reconcile reads the image, its domain and its job
// pod, and acts on the difference. A transient failure (network, registry) starts a
// new job after a pause — it resumes the download by HTTP Range; a permanent one
// (checksum, format, 404) stays Failed until the image is recreated.
import { API_VERSION, type StorageDomain, type VirtualMachineImage, type VirtualMachineImageStatus } from '@keyvirt/crds';
import type { Clock } from '../runtime/clock.ts';
import type { ReconcileContext, Reconciler, ReconcileResult } from '../runtime/controller.ts';
import type { Pod } from '../runtime/core-schemas.ts';
import type { EventSink } from '../runtime/event-recorder.ts';
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { controllerReference } from '../runtime/owner-mapping.ts';
import { objectPath } from '../runtime/resource.ts';
import { guardedStatusPatch, resourceVersionOf, sameStatus } from '../runtime/status-patch.ts';
import { BackingVolumeError, planBackingVolume, type BackingVolumePlan, type OwnerRef } from '../storage/backing-volume.ts';
import { DomainJobs, type JobPlace } from '../storage/domain-jobs.ts';
import type { JobOutcome } from '../storage/storage-job.ts';
import { storageDomainType } from '../vm/names.ts';
import { imageStatus, isTransientFailure, type DomainView, type JobView } from './image-status.ts';
import { imageJobPod, imageJobPodName, imagePaths, ImageSourceError, importSource, parseImportResult, type ImageJobSpec, type ImageSource, type ImportProgressDocument, type ImportResult } from './import-job.ts';
import { IMAGE_FINALIZER, virtualMachineImageType } from './names.ts';
import { findPvcReader, pvcReaderPod, pvcReaderUrl } from './pvc-reader.ts';
import { IMPORT_UPLOAD_USER } from './import-script.ts';
import { newUploadToken } from './import-job.ts';

export interface ImageCaches {
  image(key: string): VirtualMachineImage | undefined;
  domain(name: string): StorageDomain | undefined;
  /** Storage job pods (every namespace). */
  jobPods(): readonly Pod[];
  /** The VMs of `namespace` with a disk on `domain` over image `name`. */
  vmsUsing(namespace: string, name: string, domain: string): readonly string[];
}

export interface ImageSettings {
  /** The operator's namespace: the domains' claims and their jobs live here. */
  readonly namespace: string;
  /** The launcher image: it has sh, curl, tar, qemu-img and busybox. */
  readonly image: string;
  readonly imagePullPolicy?: string | undefined;
  /** The pause before a new attempt after a transient failure. */
  readonly retryAfterFailureMs: number;
  /** How often a running import's progress is read. */
  readonly progressIntervalMs: number;
}

/** Reads an import job's progress document from its pod; undefined when it cannot. */
export type ProgressReader = (pod: Pod, signal: AbortSignal) => Promise<ImportProgressDocument | undefined>;

export interface ImageControllerDeps {
  readonly caches: ImageCaches;
  readonly client: Pick<KubeClient, 'create' | 'patch' | 'delete'>;
  readonly events: EventSink;
  readonly clock: Clock;
  readonly settings: ImageSettings;
  readonly progress: ProgressReader;
}

interface ImageMemory {
  sample?: { bytes: number; atMs: number };
  bytesPerSecond?: number;
  failure?: { reason: string; message: string; atMs: number };
  written?: VirtualMachineImageStatus;
  writtenResourceVersion?: string | undefined;
  /** The token of the image's claim reader (a pvc source); lost with the process, when the reader is made anew. */
  readerToken?: string;
}

interface DomainPlace {
  readonly view: DomainView;
  readonly sd?: StorageDomain | undefined;
  readonly plan?: BackingVolumePlan | undefined;
  readonly owner?: OwnerRef | undefined;
}

/** Ready, or Failed for good: nothing more to do until the image is recreated. */
function isSettled(status: VirtualMachineImageStatus | undefined): boolean {
  return status?.phase === 'Ready' || (status?.phase === 'Failed' && !isTransientFailure(status.reason ?? ''));
}

/** How long a stopped import is given before its image's file is removed. */
const IMPORT_STOP_MS = 10_000;

function sourceOf(image: VirtualMachineImage): { source?: ImageSource; sourceProblem?: string } {
  try {
    return { source: importSource(image) };
  } catch (err) {
    if (!(err instanceof ImageSourceError)) throw err;
    return { sourceProblem: err.message };
  }
}

export class ImageController implements Reconciler {
  readonly #d: ImageControllerDeps;
  readonly #jobs: DomainJobs;
  readonly #memory = new Map<string, ImageMemory>();

  constructor(deps: ImageControllerDeps) {
    this.#d = deps;
    this.#jobs = new DomainJobs({ client: deps.client, jobPods: () => deps.caches.jobPods(), trustedNamespace: deps.settings.namespace });
  }

  async reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult> {
    const cached = this.#d.caches.image(key);
    if (cached === undefined) {
      this.#memory.delete(key);
      return {};
    }
    const memory = this.#remember(key, cached);
    const image: VirtualMachineImage = { ...cached, status: memory.written ?? cached.status };
    const place = this.#domainPlace(image);
    if (image.metadata.deletionTimestamp !== undefined) return this.#finalize(ctx, image, place);
    if (!(image.metadata.finalizers ?? []).includes(IMAGE_FINALIZER)) {
      await this.#patchImage(image, { metadata: { finalizers: [...(image.metadata.finalizers ?? []), IMAGE_FINALIZER], resourceVersion: image.metadata.resourceVersion } }, ctx.signal);
    }
    const { source, sourceProblem } = sourceOf(image);
    const { job, requeueAfterMs, ended } = await this.#importState(ctx, image, place, source, memory);
    const now = new Date(this.#d.clock.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await this.#writeStatus(ctx, image, memory, imageStatus(image, { domain: place.view, job, sourceProblem, now }));
    // The ended job goes only once its outcome is written: a status write that fails (a
    // conflict, an outage) finds the job and its report again, instead of no job and a new import.
    if (ended !== undefined) {
      await this.#jobs.remove(ended, ctx.signal);
      if (source?.kind === 'pvc') await this.#removeClaimReader(ctx, image, memory);
    }
    return requeueAfterMs === undefined ? {} : { requeueAfterMs };
  }

  /** The image's memory; a status this operator wrote is forgotten once the cache shows it. */
  #remember(key: string, cached: VirtualMachineImage): ImageMemory {
    const memory = this.#memory.get(key) ?? {};
    this.#memory.set(key, memory);
    if (memory.written !== undefined && sameStatus(memory.written, cached.status)) memory.written = undefined;
    return memory;
  }

  #domainPlace(image: VirtualMachineImage): DomainPlace {
    const sd = this.#d.caches.domain(image.spec.storageDomain);
    if (sd === undefined) return { view: { state: 'missing' } };
    if (sd.status?.phase !== 'Active') return { view: { state: 'not-ready', phase: sd.status?.phase ?? 'Pending' }, sd };
    const owner = controllerReference(storageDomainType, sd);
    let plan: BackingVolumePlan;
    try {
      plan = planBackingVolume(sd, this.#d.settings.namespace, owner);
    } catch (err) {
      if (!(err instanceof BackingVolumeError)) throw err;
      return { view: { state: 'unsupported', message: err.message }, sd };
    }
    if (plan.claimRef === undefined) {
      return { view: { state: 'unsupported', message: `StorageDomain ${sd.metadata.name} is of type ${sd.spec.type}, which has no domain-wide volume to hold images` }, sd };
    }
    return { view: { state: 'ready' }, sd, plan, owner };
  }

  #jobSpec(op: 'import' | 'delete', image: VirtualMachineImage, place: DomainPlace, source?: ImageSource): ImageJobSpec & JobPlace {
    const { sd, plan, owner } = place;
    const claim = plan?.claimRef;
    if (sd === undefined || plan === undefined || owner === undefined || claim === undefined) throw new Error('the domain is not ready');
    const namespace = image.metadata.namespace ?? 'default';
    return {
      op,
      name: imageJobPodName(op, namespace, image.metadata.name, image.metadata.uid ?? ''),
      namespace: claim.namespace,
      domain: sd.metadata.name,
      domainUid: owner.uid,
      claimName: claim.name,
      image: this.#d.settings.image,
      imagePullPolicy: this.#d.settings.imagePullPolicy,
      owner,
      nodeName: plan.nodeName,
      imageKey: `${namespace}/${image.metadata.name}`,
      ...imagePaths(image),
      format: image.spec.format,
      source,
    };
  }

  async #importState(ctx: ReconcileContext, image: VirtualMachineImage, place: DomainPlace, source: ImageSource | undefined, memory: ImageMemory): Promise<{ job: JobView; requeueAfterMs?: number; ended?: Pod }> {
    if (!isSettled(image.status)) {
      if (source !== undefined && place.view.state === 'ready') return this.#followImport(ctx, image, place, source, memory);
      if (place.view.state === 'missing' || place.view.state === 'not-ready') return { job: { state: 'none' }, requeueAfterMs: this.#d.settings.retryAfterFailureMs };
      return { job: { state: 'none' } };
    }
    if (source === undefined || place.view.state !== 'ready') return { job: { state: 'none' } };
    // A job whose outcome the status already holds, left by a removal that failed.
    const run = await this.#jobs.find(this.#jobSpec('import', image, place, source), ctx.signal);
    return { job: { state: 'none' }, ...(run.pod !== undefined && run.outcome?.state !== 'running' ? { ended: run.pod } : {}) };
  }

  /** The import's state; `ended`: its job has ended, to be removed once the status holds its outcome. */
  async #followImport(ctx: ReconcileContext, image: VirtualMachineImage, place: DomainPlace, source: ImageSource, memory: ImageMemory): Promise<{ job: JobView; requeueAfterMs?: number; ended?: Pod }> {
    const spec = this.#jobSpec('import', image, place, source);
    const now = this.#d.clock.now();
    const run = await this.#jobs.find(spec, ctx.signal);
    if (run.pod === undefined) return this.#startImport(ctx, image, spec, source, memory);
    if (run.outcome?.state === 'succeeded' || run.outcome?.state === 'failed') {
      const message = run.pod.status?.containerStatuses?.[0]?.state?.terminated?.message;
      return { ...this.#finished(ctx, memory, now, { outcome: run.outcome, result: parseImportResult(message), path: spec.target }), ended: run.pod };
    }
    const progress = run.pod.status?.phase === 'Running' ? await this.#d.progress(run.pod, ctx.signal) : undefined;
    if (progress !== undefined) {
      const last = memory.sample;
      if (last !== undefined && now > last.atMs && progress.bytes >= last.bytes) {
        const instant = ((progress.bytes - last.bytes) * 1000) / (now - last.atMs);
        memory.bytesPerSecond = memory.bytesPerSecond === undefined ? instant : 0.5 * memory.bytesPerSecond + 0.5 * instant;
      }
      memory.sample = { bytes: progress.bytes, atMs: now };
    }
    return { job: { state: 'running', progress, bytesPerSecond: memory.bytesPerSecond }, requeueAfterMs: this.#d.settings.progressIntervalMs };
  }

  /** A new import job, after the pause that follows a transient failure; a pvc source first needs its claim reader. */
  async #startImport(ctx: ReconcileContext, image: VirtualMachineImage, spec: ImageJobSpec & JobPlace, source: ImageSource, memory: ImageMemory): Promise<{ job: JobView; requeueAfterMs?: number }> {
    const now = this.#d.clock.now();
    const failure = memory.failure;
    if (failure !== undefined && now - failure.atMs < this.#d.settings.retryAfterFailureMs) {
      const retryInMs = failure.atMs + this.#d.settings.retryAfterFailureMs - now;
      return { job: { state: 'failed', reason: failure.reason, message: failure.message, retryInMs }, requeueAfterMs: retryInMs };
    }
    let startSpec = spec;
    if (source.kind === 'pvc') {
      const resolved = await this.#claimReader(ctx, image, source.claimName, memory);
      if (resolved === undefined) return { job: { state: 'running' }, requeueAfterMs: this.#d.settings.progressIntervalMs };
      startSpec = { ...spec, source: resolved };
    }
    memory.failure = undefined;
    memory.sample = undefined;
    memory.bytesPerSecond = undefined;
    await this.#jobs.startPod(spec.namespace, imageJobPod(startSpec), ctx.signal);
    ctx.log.info({ job: spec.name, source: source.kind }, 'import job started');
    return { job: { state: 'running' }, requeueAfterMs: this.#d.settings.progressIntervalMs };
  }

  /**
   * The claim reader of a pvc source, started if missing; the HTTP source the import job
   * downloads once it runs, undefined until then. A reader whose token this process does
   * not know (an operator restart) is replaced.
   */
  async #claimReader(ctx: ReconcileContext, image: VirtualMachineImage, claimName: string, memory: ImageMemory): Promise<ImageSource | undefined> {
    const reader = findPvcReader(this.#d.caches.jobPods(), image);
    const token = memory.readerToken;
    if (reader !== undefined && token !== undefined) {
      const url = pvcReaderUrl(reader);
      return url === undefined ? undefined : { kind: 'http', url, credentials: `${IMPORT_UPLOAD_USER}:${token}` };
    }
    if (reader !== undefined) {
      await this.#removeClaimReader(ctx, image, memory);
      return undefined;
    }
    memory.readerToken = newUploadToken();
    const pod = pvcReaderPod({ image, claimName, token: memory.readerToken, launcherImage: this.#d.settings.image, imagePullPolicy: this.#d.settings.imagePullPolicy });
    try {
      await this.#d.client.create(`/api/v1/namespaces/${image.metadata.namespace ?? 'default'}/pods`, pod, ctx.signal);
      ctx.log.info({ claim: claimName }, 'claim reader started');
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    return undefined;
  }

  async #removeClaimReader(ctx: ReconcileContext, image: VirtualMachineImage, memory: ImageMemory): Promise<void> {
    memory.readerToken = undefined;
    const reader = findPvcReader(this.#d.caches.jobPods(), image);
    if (reader === undefined) return;
    try {
      await this.#d.client.delete(`/api/v1/namespaces/${reader.metadata.namespace ?? 'default'}/pods/${reader.metadata.name}`, ctx.signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  #finished(
    ctx: ReconcileContext,
    memory: ImageMemory,
    now: number,
    { outcome, result, path }: { outcome: JobOutcome; result: ImportResult | undefined; path: string },
  ): { job: JobView; requeueAfterMs?: number } {
    if (outcome.state === 'succeeded') {
      if (result === undefined || 'failed' in result) return this.#failed(ctx, memory, now, 'ImportFailed', 'the import job ended without reporting its image');
      ctx.log.info({ durationMs: result.durationMs, downloadMs: result.downloadMs, convertMs: result.convertMs, sourceFormat: result.sourceFormat }, 'image imported');
      return { job: { state: 'succeeded', result, path } };
    }
    if (result !== undefined && 'failed' in result) return this.#failed(ctx, memory, now, result.reason, result.message);
    const why = outcome.state === 'failed' ? outcome.message : 'no message';
    return this.#failed(ctx, memory, now, 'ImportFailed', `the import job failed: ${why.slice(0, 1000)}`);
  }

  #failed(ctx: ReconcileContext, memory: ImageMemory, now: number, reason: string, message: string): { job: JobView; requeueAfterMs?: number } {
    ctx.log.warn({ reason, message }, 'image import failed');
    if (!isTransientFailure(reason)) return { job: { state: 'failed', reason, message } };
    memory.failure = { reason, message, atMs: now };
    const retryInMs = this.#d.settings.retryAfterFailureMs;
    return { job: { state: 'failed', reason, message, retryInMs }, requeueAfterMs: retryInMs };
  }

  /** Deleting: stop an import in flight, remove the file (and its work directory) with a job, then let the image go. */
  async #finalize(ctx: ReconcileContext, image: VirtualMachineImage, place: DomainPlace): Promise<ReconcileResult> {
    const finalizers = image.metadata.finalizers ?? [];
    if (!finalizers.includes(IMAGE_FINALIZER)) return {};
    // Disks made over the image read it as their backing file: it stays while a VM names it.
    const users = this.#d.caches.vmsUsing(image.metadata.namespace ?? 'default', image.metadata.name, image.spec.storageDomain);
    if (users.length > 0) {
      ctx.log.info({ vms: users }, 'image deletion waits for the VMs whose disks use it');
      return { requeueAfterMs: this.#d.settings.retryAfterFailureMs };
    }
    if (place.view.state === 'ready') {
      const importing = await this.#jobs.find(this.#jobSpec('import', image, place), ctx.signal);
      if (importing.pod !== undefined) {
        // Its process may still run on the node for a moment after the pod object goes:
        // the file is removed only after that, so that a late rename cannot bring it back.
        await this.#jobs.remove(importing.pod, ctx.signal);
        return { requeueAfterMs: IMPORT_STOP_MS };
      }
      const spec = this.#jobSpec('delete', image, place);
      const run = await this.#jobs.find(spec, ctx.signal);
      if (run.pod === undefined) {
        await this.#jobs.startPod(spec.namespace, imageJobPod(spec), ctx.signal);
        return { requeueAfterMs: this.#d.settings.progressIntervalMs };
      }
      if (run.outcome?.state === 'running') return { requeueAfterMs: this.#d.settings.progressIntervalMs };
      await this.#jobs.remove(run.pod, ctx.signal);
      if (run.outcome?.state === 'failed') {
        await this.#d.events.record(this.#target(image), { type: 'Warning', reason: 'DeleteFailed', action: 'Delete', note: run.outcome.message.slice(0, 1000) });
        return { requeueAfterMs: this.#d.settings.retryAfterFailureMs };
      }
    } else if (place.view.state !== 'missing' && place.view.state !== 'unsupported') {
      // The file may be there: wait until the domain can run a job again.
      return { requeueAfterMs: this.#d.settings.retryAfterFailureMs };
    }
    await this.#patchImage(image, { metadata: { finalizers: finalizers.filter((f) => f !== IMAGE_FINALIZER), resourceVersion: image.metadata.resourceVersion } }, ctx.signal);
    ctx.log.info('image file removed, finalizer released');
    this.#memory.delete(`${image.metadata.namespace ?? 'default'}/${image.metadata.name}`);
    return {};
  }

  #target(image: VirtualMachineImage): { apiVersion: string; kind: string; metadata: VirtualMachineImage['metadata'] } {
    return { apiVersion: API_VERSION, kind: 'VirtualMachineImage', metadata: image.metadata };
  }

  async #patchImage(image: VirtualMachineImage, body: unknown, signal: AbortSignal): Promise<void> {
    try {
      await this.#d.client.patch(objectPath(virtualMachineImageType, { namespace: image.metadata.namespace, name: image.metadata.name }), body, 'merge', signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async #writeStatus(ctx: ReconcileContext, image: VirtualMachineImage, memory: ImageMemory, next: VirtualMachineImageStatus): Promise<void> {
    const previous = image.status;
    if (sameStatus(previous, next)) return;
    // Guarded by the version the status was computed from (ADR 0102): a stale write gets 409.
    const version = memory.written === undefined ? image.metadata.resourceVersion : (memory.writtenResourceVersion ?? image.metadata.resourceVersion);
    let answer: unknown;
    try {
      answer = await this.#d.client.patch(
        objectPath(virtualMachineImageType, { namespace: image.metadata.namespace, name: image.metadata.name }, 'status'),
        guardedStatusPatch(next, version),
        'json',
        ctx.signal,
      );
    } catch (err) {
      if (isNotFound(err)) return;
      if (isConflict(err)) memory.written = undefined;
      throw err;
    }
    memory.written = next;
    memory.writtenResourceVersion = resourceVersionOf(answer);
    if (next.phase !== previous?.phase && next.phase !== undefined) {
      const note = next.phase === 'Ready' ? `imported: ${next.size ?? '?'} ${next.format ?? ''} from ${next.sourceFormat ?? '?'}` : (next.message ?? next.phase);
      await this.#d.events.record(this.#target(image), { type: next.phase === 'Failed' ? 'Warning' : 'Normal', reason: next.phase === 'Failed' ? (next.reason ?? 'Failed') : next.phase, action: 'Import', note: note.slice(0, 1000) });
    }
  }
}

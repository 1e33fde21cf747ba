// The status of a VirtualMachineImage, decided from what the controller saw: the
// target domain, the import job (absent, running with its progress, succeeded with
// its result, failed with a reason) and the time. Pure; tested by tables.
import type { Condition, ImageFailureReason, VirtualMachineImage, VirtualMachineImageStatus } from '@keyvirt/crds';
import { IMAGE_FAILURE_REASONS } from '@keyvirt/crds';
import type { ImportProgressDocument, ImportResult } from './import-job.ts';

export type DomainView =
  | { readonly state: 'ready' }
  | { readonly state: 'missing' }
  | { readonly state: 'not-ready'; readonly phase: string }
  | { readonly state: 'unsupported'; readonly message: string };

export type ImportSuccess = Exclude<ImportResult, { failed: true }>;

export type JobView =
  | { readonly state: 'none' }
  | { readonly state: 'running'; readonly progress?: ImportProgressDocument | undefined; readonly bytesPerSecond?: number | undefined }
  | { readonly state: 'succeeded'; readonly result: ImportSuccess; readonly path: string }
  | { readonly state: 'failed'; readonly reason: string; readonly message: string; readonly retryInMs?: number | undefined };

/** Failures a new attempt may cure (the network, the registry); the others stay Failed until the image is recreated. */
const TRANSIENT: ReadonlySet<string> = new Set(['SourceUnreachable', 'RegistryError', 'NoSpace', 'ImportFailed']);

export function isTransientFailure(reason: string): boolean {
  return TRANSIENT.has(reason);
}

/** A failure reason from a job, bounded to the ones the API documents. */
export function knownReason(reason: string): ImageFailureReason {
  return (IMAGE_FAILURE_REASONS as readonly string[]).includes(reason) ? (reason as ImageFailureReason) : 'ImportFailed';
}

const UNITS = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'] as const;

/** A byte count for people: 64Mi, 1.5Gi, 512. */
export function humanBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 || Number.isInteger(value) || value >= 100 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${text}${UNITS[unit] ?? ''}`;
}

function percentOf(bytes: number, total: number): number | undefined {
  if (total <= 0) return undefined;
  return Math.max(0, Math.min(100, Math.floor((bytes * 100) / total)));
}

/** The progress display of an upload import whose job waits for the bytes (the plugin waits for it before it sends). */
export const UPLOAD_WAITING = 'waiting for upload';

function progressOf(job: Extract<JobView, { state: 'running' }>): VirtualMachineImageStatus['progress'] {
  const doc = job.progress;
  if (doc === undefined) return { bytes: 0, display: 'starting' };
  const percent = percentOf(doc.bytes, doc.totalBytes);
  const rate = job.bytesPerSecond === undefined ? undefined : Math.max(0, Math.round(job.bytesPerSecond));
  const amount = percent === undefined ? humanBytes(doc.bytes) : `${percent}%`;
  const moving = doc.stage === 'downloading' || doc.stage === 'uploading' || doc.stage === 'starting';
  const display = doc.stage === 'waiting' ? UPLOAD_WAITING : moving ? `${amount}${rate === undefined ? '' : ` ${humanBytes(rate)}/s`}` : `${amount} ${doc.stage}`;
  return {
    bytes: doc.bytes,
    ...(doc.totalBytes > 0 ? { totalBytes: doc.totalBytes } : {}),
    ...(percent === undefined ? {} : { percent }),
    ...(rate === undefined ? {} : { bytesPerSecond: rate }),
    display,
  };
}

interface ConditionFacts {
  readonly previous: VirtualMachineImageStatus | undefined;
  readonly now: string;
  readonly generation: number | undefined;
}

function readyCondition({ previous, now, generation }: ConditionFacts, status: 'True' | 'False', reason: string, message: string): Condition {
  const old = previous?.conditions?.find((c) => c.type === 'Ready');
  const same = old !== undefined && old.status === status && old.reason === reason;
  return {
    type: 'Ready',
    status,
    reason,
    message: message.slice(0, 4096),
    lastTransitionTime: same ? old.lastTransitionTime : now,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
}

export interface StatusInput {
  readonly domain: DomainView;
  readonly job: JobView;
  /** Set when the source cannot be imported at all (a source this version does not serve). */
  readonly sourceProblem?: string | undefined;
  /** RFC 3339. */
  readonly now: string;
}

/** The status `image` gets from what the controller saw. */
export function imageStatus(image: VirtualMachineImage, input: StatusInput): VirtualMachineImageStatus {
  const previous = image.status;
  const generation = image.metadata.generation;
  const base = { ...(generation === undefined ? {} : { observedGeneration: generation }) };
  const cond = (status: 'True' | 'False', reason: string, message: string): Condition[] => [readyCondition({ previous, now: input.now, generation }, status, reason, message)];
  if (previous?.phase === 'Ready') return { ...previous, ...base };
  if (previous?.phase === 'Failed' && !isTransientFailure(previous.reason ?? '')) return { ...previous, ...base };
  if (input.sourceProblem !== undefined) {
    return { ...base, phase: 'Failed', reason: 'ImportFailed', message: input.sourceProblem, conditions: cond('False', 'ImportFailed', input.sourceProblem) };
  }
  const { job } = input;
  if (job.state === 'succeeded') {
    const r = job.result;
    return {
      ...base,
      phase: 'Ready',
      progress: { bytes: r.sourceBytes, totalBytes: r.sourceBytes, percent: 100, display: '100%' },
      sourceFormat: r.sourceFormat,
      format: r.format,
      virtualSize: r.virtualSize,
      size: humanBytes(r.virtualSize),
      allocatedBytes: r.allocatedBytes,
      path: job.path,
      importDurationMs: r.durationMs,
      conditions: cond('True', 'Imported', `imported from ${r.sourceFormat} into ${r.format} in ${(r.durationMs / 1000).toFixed(1)} s`),
    };
  }
  if (job.state === 'failed') {
    const reason = knownReason(job.reason);
    if (isTransientFailure(reason) && job.retryInMs !== undefined) {
      const message = `${job.message}; trying again in ${Math.ceil(job.retryInMs / 1000)} s`;
      return { ...base, phase: 'Importing', reason, message, ...(previous?.progress === undefined ? {} : { progress: previous.progress }), conditions: cond('False', reason, message) };
    }
    return { ...base, phase: 'Failed', reason, message: job.message, conditions: cond('False', reason, job.message) };
  }
  if (job.state === 'running') {
    return { ...base, phase: 'Importing', progress: progressOf(job), conditions: cond('False', 'Importing', 'the import job runs') };
  }
  switch (input.domain.state) {
    case 'missing': {
      const message = `StorageDomain ${image.spec.storageDomain} does not exist`;
      return { ...base, phase: 'Pending', reason: 'StorageDomainNotFound', message, conditions: cond('False', 'StorageDomainNotFound', message) };
    }
    case 'not-ready': {
      const message = `StorageDomain ${image.spec.storageDomain} is ${input.domain.phase}, not Active`;
      return { ...base, phase: 'Pending', reason: 'StorageDomainNotReady', message, conditions: cond('False', 'StorageDomainNotReady', message) };
    }
    case 'unsupported': {
      const message = input.domain.message;
      return { ...base, phase: 'Failed', reason: 'ImportFailed', message, conditions: cond('False', 'ImportFailed', message) };
    }
    case 'ready':
      return { ...base, phase: 'Importing', progress: { bytes: 0, display: 'starting' }, conditions: cond('False', 'Importing', 'the import job starts') };
  }
}

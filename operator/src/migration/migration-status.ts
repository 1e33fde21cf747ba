// A VirtualMachineMigration's status: pure builders (progress from the source launcher's
// report, the end figures from its result, the Progressing condition), and the writer
// that patches the status subresource when it changed and records one event per phase
// transition. The migration controller is the only writer of this status. Every write
// is guarded by the resourceVersion it was computed from (runtime/status-patch.ts,
// ADR 0102): a stale writer gets 409 Conflict, forgets what it wrote, and the reconcile
// is retried from the cache.
import type { Condition, MigrationPhase, MigrationProgress, VirtualMachineMigration, VirtualMachineMigrationStatus } from '@keyvirt/crds';
import { API_VERSION } from '@keyvirt/crds';
import type { MigrationProgress as LauncherProgress, MigrationResult } from '@keyvirt/launcher/api';
import type { Logger } from 'pino';
import type { EventSink } from '../runtime/event-recorder.ts';
import { isConflict, type KubeClient } from '../runtime/kube-client.ts';
import { keyOf, objectPath } from '../runtime/resource.ts';
import { freshestStatus, guardedStatusPatch, resourceVersionOf, sameStatus, type WrittenStatus } from '../runtime/status-patch.ts';
import { virtualMachineMigrationType } from '../vm/names.ts';
import { rfc3339 } from '../vm/vm-status.ts';
import { isFinal } from './phases.ts';

/** status.progress from the source launcher's latest progress report. */
export function progressOf(p: LauncherProgress, now: number): MigrationProgress {
  const percent = p.totalBytes > 0 ? Math.max(0, Math.min(100, Math.floor(((p.totalBytes - Math.min(p.remainingBytes, p.totalBytes)) / p.totalBytes) * 100))) : 0;
  return {
    iteration: p.iteration,
    transferredBytes: p.transferredBytes,
    remainingBytes: p.remainingBytes,
    totalBytes: p.totalBytes,
    percent,
    dirtyRateBytesPerSecond: p.dirtyRateBytesPerSecond,
    bandwidthBytesPerSecond: p.throughputBytesPerSecond,
    downtimeLimitMs: p.downtimeLimitMs,
    mode: p.postCopy ? 'PostCopy' : 'PreCopy',
    updateTime: rfc3339(now),
  };
}

/** The end figures of a finished migration, from the source's result when it was read. */
export function resultFields(result: MigrationResult | undefined, previous: MigrationProgress | undefined): Partial<VirtualMachineMigrationStatus> {
  if (result === undefined) return {};
  return {
    mode: result.postCopy ? 'PostCopy' : 'PreCopy',
    ...(result.downtimeMs === null ? {} : { downtimeMs: result.downtimeMs }),
    ...(result.totalTimeMs === null ? {} : { totalTimeMs: result.totalTimeMs }),
    ...(result.guestPauseMs === null ? {} : { guestPauseMs: Math.round(result.guestPauseMs) }),
    ...(result.phase === 'Succeeded' && previous !== undefined
      ? { progress: { ...previous, remainingBytes: 0, percent: 100, transferredBytes: Math.max(previous.transferredBytes ?? 0, result.transferredBytes), iteration: result.iterations } }
      : {}),
  };
}

/** The Progressing condition: True while the migration moves, False while it waits or after it ended. */
export function progressingCondition(
  previous: readonly Condition[] | undefined,
  next: { status: 'True' | 'False'; reason: string; message: string },
  now: string,
  generation: number | undefined,
): Condition[] {
  const old = previous?.find((c) => c.type === 'Progressing');
  const lastTransitionTime = old !== undefined && old.status === next.status ? old.lastTransitionTime : now;
  return [{ type: 'Progressing', status: next.status, reason: next.reason, message: next.message.slice(0, 32_000), lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) }];
}

/** A status in `phase`: the transition time moves only when the phase changes. */
export function withPhase(previous: VirtualMachineMigrationStatus | undefined, phase: MigrationPhase, now: string): VirtualMachineMigrationStatus {
  return { ...previous, phase, phaseTransitionTime: previous?.phase === phase && previous.phaseTransitionTime !== undefined ? previous.phaseTransitionTime : now };
}

const WARNING_PHASES = new Set<string>(['Failed']);

/** A status this operator wrote for the migration with `uid` (a name may be reused by a new object). */
interface Remembered {
  readonly uid: string;
  readonly written: WrittenStatus<VirtualMachineMigrationStatus>;
}

export class MigrationStatusWriter {
  readonly #client: Pick<KubeClient, 'patch'>;
  readonly #events: EventSink;
  /**
   * What this operator wrote last per migration key, until the cache shows it (or shows
   * a final phase, which is never left): the cache may lag behind this operator's writes.
   */
  readonly #written = new Map<string, Remembered>();

  constructor(client: Pick<KubeClient, 'patch'>, events: EventSink) {
    this.#client = client;
    this.#events = events;
  }

  #freshest(m: VirtualMachineMigration): { status: VirtualMachineMigrationStatus | undefined; resourceVersion: string | undefined } {
    const key = keyOf(m.metadata);
    const remembered = this.#written.get(key);
    const mine = remembered !== undefined && remembered.uid === (m.metadata.uid ?? '') && !isFinal(m.status?.phase) ? remembered.written : undefined;
    const fresh = freshestStatus({ status: m.status, resourceVersion: m.metadata.resourceVersion }, mine, sameStatus);
    if (fresh.written === undefined) this.#written.delete(key);
    return fresh;
  }

  /** The freshest status known: what this operator wrote last, else the cached one. */
  current(m: VirtualMachineMigration): VirtualMachineMigrationStatus | undefined {
    return this.#freshest(m).status;
  }

  /**
   * Writes `next` when it differs from the freshest status; an event when the phase
   * changed. Throws KubeApiError 409 when `m` is stale (the object moved on since).
   */
  async write(m: VirtualMachineMigration, next: VirtualMachineMigrationStatus, log: Logger): Promise<void> {
    const key = keyOf(m.metadata);
    const { status: previous, resourceVersion } = this.#freshest(m);
    if (sameStatus(previous, next)) return;
    const path = objectPath(virtualMachineMigrationType, { namespace: m.metadata.namespace, name: m.metadata.name }, 'status');
    let answer: unknown;
    try {
      answer = await this.#client.patch(path, guardedStatusPatch(next, resourceVersion), 'json');
    } catch (err) {
      if (isConflict(err)) {
        this.#written.delete(key);
        log.info({ resourceVersion }, 'migration status write conflicted; retrying from fresh state');
      }
      throw err;
    }
    this.#written.set(key, { uid: m.metadata.uid ?? '', written: { status: next, resourceVersion: resourceVersionOf(answer) } });
    if (next.phase !== undefined && next.phase !== previous?.phase) {
      log.info({ from: previous?.phase, to: next.phase }, 'migration phase changed');
      const progressing = next.conditions?.find((c) => c.type === 'Progressing');
      await this.#events.record(
        { apiVersion: API_VERSION, kind: 'VirtualMachineMigration', metadata: m.metadata },
        {
          type: WARNING_PHASES.has(next.phase) ? 'Warning' : 'Normal',
          reason: next.phase,
          action: 'Migrate',
          note: describe(next, progressing?.message),
        },
      );
    }
  }

  /** Forgets the migration at `key` (namespace/name): it is gone. */
  forget(key: string): void {
    this.#written.delete(key);
  }

  /** How many migrations this writer remembers a write for (it must not grow with every migration ever seen). */
  get remembered(): number {
    return this.#written.size;
  }

  /** A Normal event beside the phase events: something the migration does differently than asked, and why. */
  async notice(m: VirtualMachineMigration, reason: string, note: string): Promise<void> {
    await this.#events.record({ apiVersion: API_VERSION, kind: 'VirtualMachineMigration', metadata: m.metadata }, { type: 'Normal', reason, action: 'Migrate', note });
  }
}

function describe(s: VirtualMachineMigrationStatus, detail: string | undefined): string {
  switch (s.phase) {
    case 'Scheduling':
      return `migrating from ${s.sourceNode ?? 'its node'}: choosing a target node`;
    case 'PreparingTarget':
      return `target pod ${s.targetPod ?? ''} on ${s.targetNode ?? ''} starting QEMU to receive the VM`;
    case 'TargetReady':
      return `target ${s.targetPod ?? ''} listens for the migration stream`;
    case 'Running':
      return `copying the VM from ${s.sourceNode ?? ''} to ${s.targetNode ?? ''}`;
    case 'Succeeded':
      return `the VM runs on ${s.targetNode ?? ''} (downtime ${s.downtimeMs ?? '?'} ms, total ${s.totalTimeMs ?? '?'} ms)`;
    default:
      return detail ?? `migration is ${s.phase ?? 'unknown'}`;
  }
}

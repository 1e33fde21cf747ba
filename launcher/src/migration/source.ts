// The source side of a live migration: sets QEMU's capabilities and parameters from
// the policy, starts the migration, follows it (MIGRATION / MIGRATION_PASS events
// wake a `query-migrate` poll), applies the convergence schedule, and concludes:
// on success the source QEMU is left in `postmigrate`; on failure or cancel the
// source guest is running again (QEMU restarts it itself; `cont` if it did not) —
// unless QEMU had switched to post-copy: from then on the target runs the guest, the
// source never resumes it, and a failure ends in PostCopyFailed (ADR 0054).
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type {
  MigrationEvent,
  MigrationFailureReason,
  MigrationProgress,
  MigrationResult,
  MigrationTarget,
  SourceMigrationStatus,
  StartMigrationRequest,
} from '../api/migration.ts';
import { guestPauseMs } from '../api/migration.ts';
import { ConvergenceSchedule, type ConvergenceAction } from './convergence.ts';
import { eventTimeMicros, postCopyStatuses, QueryMigrateSchema, terminalStatuses, toProgress, type QueryMigrate } from './progress.ts';
import {
  emptyReturn,
  migrationEventData,
  runStatusReturn,
  setCapabilities,
  tcpUri,
  tlsParameters,
  type MigrationQmp,
  type MigrationQmpEvent,
} from './qmp-port.ts';
import { MigrationTlsCredentials, type TlsStaging } from './tls.ts';

/** "Unlimited": QEMU's default max-bandwidth is 128 MiB/s, far below a pod network. */
const UNLIMITED_BANDWIDTH = 2 ** 50;

/** Reads the target's RESUME time (epoch µs) from the target launcher, or null. */
export type TargetResumeReader = (target: MigrationTarget, signal: AbortSignal) => Promise<number | null>;

export interface SourceMigrationOptions {
  readonly request: StartMigrationRequest;
  readonly migrationId: string;
  readonly qmp: MigrationQmp;
  readonly logger: Logger;
  /** Monotonic milliseconds; injected by tests. */
  readonly nowMs?: () => number;
  readonly pollIntervalMs?: number;
  readonly readTargetResume?: TargetResumeReader;
  /** Called once when QEMU reports the post-copy switch-over (the controller raises the supervisor's fence). */
  readonly onPostCopySwitch?: () => void;
  /**
   * Called once QEMU reports `completed`, before anything else (a highly available VM
   * hands its storage lease to the target there, ADR 0063). A failure fails the
   * migration: the target never got the guest's lease, and never runs it.
   */
  readonly onCompleted?: () => Promise<void>;
  /** Private directory under the launcher's state dir for the PEM files QEMU loads. */
  readonly tlsDir: string;
  /** Where the PEM files go instead (a launcher outside the pod, ADR 0137). */
  readonly tlsStaging?: TlsStaging;
}

interface Stop {
  readonly reason: MigrationFailureReason;
  readonly message: string;
  readonly cancelled: boolean;
}

/** The result of a migration that failed after the post-copy switch-over. */
function postCopyFailure(cause: string): Pick<MigrationResult, 'phase' | 'reason' | 'message'> {
  return {
    phase: 'Failed',
    reason: 'PostCopyFailed',
    message: `post-copy migration failed after the switch-over: ${cause}; the guest state is split between source and target and the source will not run it again`,
  };
}

export class SourceMigration {
  readonly id: string;
  readonly #request: StartMigrationRequest;
  readonly #qmp: MigrationQmp;
  readonly #log: Logger;
  readonly #nowMs: () => number;
  readonly #pollMs: number;
  readonly #readTargetResume: TargetResumeReader | undefined;
  readonly #onPostCopySwitch: (() => void) | undefined;
  readonly #onCompleted: (() => Promise<void>) | undefined;
  readonly #tlsDir: string;
  readonly #tlsStaging: TlsStaging | undefined;
  readonly #schedule: ConvergenceSchedule;
  readonly #emitter = new EventEmitter<{ event: [MigrationEvent] }>();
  #progress: MigrationProgress | null = null;
  #result: MigrationResult | null = null;
  #stop: Stop | null = null;
  #cancelIssued = false;
  #postCopy = false;
  /** QEMU reported a post-copy state: the target may run the guest; the source never will again. */
  #switched = false;
  /** The stream reached the target (QEMU went `active`): a later failure is not "unreachable". */
  #sawActive = false;
  #startedAtMs = 0;
  #stoppedAtMicros: number | null = null;
  #wake: () => void = () => undefined;
  readonly #onQmpEvent = (event: MigrationQmpEvent): void => this.#handleEvent(event);

  constructor(options: SourceMigrationOptions) {
    this.id = options.migrationId;
    this.#request = options.request;
    this.#qmp = options.qmp;
    this.#log = options.logger.child({ migrationId: options.migrationId });
    this.#nowMs = options.nowMs ?? ((): number => performance.now());
    this.#pollMs = options.pollIntervalMs ?? 100;
    this.#readTargetResume = options.readTargetResume;
    this.#onPostCopySwitch = options.onPostCopySwitch;
    this.#onCompleted = options.onCompleted;
    this.#tlsDir = options.tlsDir;
    this.#tlsStaging = options.tlsStaging;
    this.#schedule = new ConvergenceSchedule(options.request.policy);
  }

  status(): SourceMigrationStatus {
    return {
      migrationId: this.id,
      target: this.#request.target,
      policy: this.#request.policy,
      progress: this.#progress,
      result: this.#result,
    };
  }

  get result(): MigrationResult | null {
    return this.#result;
  }

  /** Subscribes to progress and result events; returns the unsubscribe function. */
  subscribe(listener: (event: MigrationEvent) => void): () => void {
    this.#emitter.on('event', listener);
    return () => this.#emitter.off('event', listener);
  }

  /**
   * Asks the migration to stop and roll back. Returns false when it is too late:
   * finished, or switched to post-copy (the target then holds the newest guest state).
   */
  cancel(message = 'cancelled on request'): boolean {
    if (this.#result !== null || this.#postCopy) return false;
    this.#stop ??= { reason: 'Cancelled', message, cancelled: true };
    this.#wake();
    return true;
  }

  /** Runs the migration to its end; never throws — every outcome is a result. */
  async run(): Promise<MigrationResult> {
    const policy = this.#request.policy;
    let wasRunning = true;
    let tls: MigrationTlsCredentials | undefined;
    try {
      const before = await this.#qmp.execute('query-status', undefined, runStatusReturn);
      if (before.status !== 'running' && before.status !== 'paused') {
        return this.#finish({ phase: 'Failed', reason: 'SourceStopped', message: `source VM is ${before.status}` }, null, true);
      }
      wasRunning = before.running;
      await setCapabilities(this.#qmp, {
        events: true,
        'auto-converge': policy.autoConverge,
        'postcopy-ram': policy.postCopy,
        'pause-before-switchover': false,
      });
      // Only over TLS, only to a target whose certificate chains to this migration's CA and names tls.hostname.
      tls = await MigrationTlsCredentials.install({
        qmp: this.#qmp, logger: this.#log, baseDir: this.#tlsDir, endpoint: 'client', material: this.#request.tls,
        ...(this.#tlsStaging === undefined ? {} : { staging: this.#tlsStaging }),
      });
      await this.#qmp.execute(
        'migrate-set-parameters',
        {
          ...tlsParameters(tls.objectId, this.#request.tls.hostname),
          'downtime-limit': this.#schedule.initialDowntimeMs(),
          'max-bandwidth': policy.bandwidthBytesPerSecond === 0 ? UNLIMITED_BANDWIDTH : policy.bandwidthBytesPerSecond,
          // The policy's bandwidth is per migration: it caps the post-copy phase too (QEMU: 0 is unlimited there).
          'max-postcopy-bandwidth': policy.bandwidthBytesPerSecond,
        },
        emptyReturn,
      );
      this.#qmp.on('event', this.#onQmpEvent);
      this.#startedAtMs = this.#nowMs();
      const uri = tcpUri(this.#request.target.host, this.#request.target.port);
      this.#log.info({ uri, policy }, 'migration started');
      await this.#qmp.execute('migrate', { uri }, emptyReturn);
      const last = await this.#follow();
      return await this.#conclude(last, wasRunning);
    } catch (err) {
      this.#log.error({ err }, 'migration failed');
      if (this.#switched) return this.#finish(postCopyFailure((err as Error).message), null, false);
      const running = await this.#ensureSourceRunning(wasRunning);
      return this.#finish({ phase: 'Failed', reason: 'QemuFailed', message: (err as Error).message }, null, running);
    } finally {
      this.#qmp.off('event', this.#onQmpEvent);
      await tls?.remove();
    }
  }

  #handleEvent(event: MigrationQmpEvent): void {
    if (event.event === 'STOP') {
      this.#stoppedAtMicros = eventTimeMicros(event.timestamp);
    } else if (event.event === 'MIGRATION') {
      const data = migrationEventData.safeParse(event.data);
      this.#log.debug({ status: data.success ? data.data.status : undefined }, 'migration state');
      // The event comes before any later query answer on the same session: the switch is known before a failure is.
      if (data.success && postCopyStatuses.has(data.data.status)) this.#markSwitched();
      this.#wake();
    } else if (event.event === 'MIGRATION_PASS') {
      this.#wake();
    }
  }

  async #query(): Promise<QueryMigrate> {
    return this.#qmp.execute('query-migrate', undefined, QueryMigrateSchema);
  }

  /** Polls until QEMU reaches a terminal state (or post-copy breaks); returns the last answer. */
  async #follow(): Promise<QueryMigrate> {
    for (;;) {
      const info = await this.#query();
      const status = info.status ?? 'none';
      if (postCopyStatuses.has(status)) this.#markSwitched();
      this.#publishProgress(info);
      if (terminalStatuses.has(status) || status === 'postcopy-paused') return info;
      if (this.#stop !== null && !this.#cancelIssued && !this.#postCopy) {
        await this.#issueCancel();
      } else if (!this.#cancelIssued) {
        const actions = this.#schedule.observe({
          elapsedMs: this.#elapsedMs(),
          status,
          iteration: info.ram?.['dirty-sync-count'] ?? 0,
          remainingBytes: info.ram?.remaining ?? 0,
          totalBytes: info.ram?.total ?? 0,
        });
        for (const action of actions) await this.#apply(action);
      }
      await this.#sleep(this.#pollMs);
    }
  }

  #markSwitched(): void {
    this.#postCopy = true;
    if (this.#switched) return;
    this.#switched = true;
    this.#log.warn('switched to post-copy: the target runs the guest now');
    this.#onPostCopySwitch?.();
  }

  async #issueCancel(): Promise<void> {
    this.#cancelIssued = true;
    this.#log.info({ reason: this.#stop?.reason, message: this.#stop?.message }, 'cancelling migration');
    await this.#qmp.execute('migrate_cancel', undefined, emptyReturn);
  }

  async #apply(action: ConvergenceAction): Promise<void> {
    switch (action.kind) {
      case 'setDowntime':
        this.#log.info({ downtimeMs: action.downtimeMs, stalledIterations: action.stalledIterations }, 'raising downtime limit');
        await this.#qmp.execute('migrate-set-parameters', { 'downtime-limit': action.downtimeMs }, emptyReturn);
        return;
      case 'startPostCopy':
        this.#log.info({ cause: action.cause }, 'switching to post-copy');
        this.#postCopy = true;
        await this.#qmp.execute('migrate-start-postcopy', undefined, emptyReturn);
        return;
      case 'abort':
        this.#stop ??= { reason: action.reason, message: action.message, cancelled: false };
        await this.#issueCancel();
        return;
    }
  }

  #publishProgress(info: QueryMigrate): void {
    const status = info.status ?? 'none';
    if (status === 'active' || postCopyStatuses.has(status)) this.#sawActive = true;
    const previous = this.#progress;
    if (previous !== null && (status === 'cancelled' || status === 'failed')) {
      // QEMU resets the RAM counters of a migration that did not complete: keep the last seen.
      this.#progress = { ...previous, qemuStatus: status, elapsedMs: Math.round(this.#elapsedMs()) };
      this.#emitter.emit('event', { type: 'progress', progress: this.#progress });
      return;
    }
    this.#progress = toProgress(info, {
      migrationId: this.id,
      phase: 'Running',
      elapsedMs: this.#elapsedMs(),
      downtimeLimitMs: this.#schedule.currentDowntimeMs(),
      postCopy: this.#postCopy,
    });
    this.#emitter.emit('event', { type: 'progress', progress: this.#progress });
  }

  async #conclude(last: QueryMigrate, wasRunning: boolean): Promise<MigrationResult> {
    const status = last.status ?? 'none';
    if (status === 'completed') {
      try {
        await this.#onCompleted?.();
      } catch (err) {
        this.#log.error({ err }, 'migration completed but the hand-off failed; the target will not run the guest');
        return this.#finish({ phase: 'Failed', reason: 'QemuFailed', message: `hand-off after completion failed: ${(err as Error).message}` }, last, false);
      }
      const final = await this.#completedTimes(last);
      const resumedAt = await this.#targetResume();
      this.#log.info({ totalTimeMs: final['total-time'], downtimeMs: final.downtime }, 'migration completed');
      return this.#finish({ phase: 'Succeeded' }, final, false, resumedAt);
    }
    if (this.#switched) {
      // Never `cont` here: the target ran the guest after the switch-over.
      this.#log.error({ status, error: last['error-desc'] }, 'post-copy migration failed after the switch-over');
      return this.#finish(postCopyFailure(`${last['error-desc'] ?? 'connection lost'} (QEMU migration state ${status})`), last, false);
    }
    const running = await this.#ensureSourceRunning(wasRunning);
    const stop = this.#stop;
    if (stop !== null && status === 'cancelled') {
      return this.#finish({ phase: stop.cancelled ? 'Cancelled' : 'Failed', reason: stop.reason, message: stop.message }, last, running);
    }
    const desc = last['error-desc'] ?? `migration ended in state ${status}`;
    const reason: MigrationFailureReason = this.#sawActive ? 'QemuFailed' : 'TargetUnreachable';
    return this.#finish({ phase: 'Failed', reason, message: desc }, last, running);
  }

  /**
   * QEMU 7.2 reports `completed` before it computes total-time and downtime (both read
   * 0 until then, in the same step): ask again briefly.
   */
  async #completedTimes(last: QueryMigrate): Promise<QueryMigrate> {
    let info = last;
    for (let i = 0; i < 40 && !((info['total-time'] ?? 0) > 0 && info.downtime !== undefined); i++) {
      await this.#sleep(50);
      info = await this.#query();
    }
    return info;
  }

  async #targetResume(): Promise<number | null> {
    const read = this.#readTargetResume;
    if (read === undefined || this.#request.target.launcherUrl === undefined) return null;
    try {
      return await read(this.#request.target, AbortSignal.timeout(5000));
    } catch (err) {
      this.#log.warn({ err }, 'target resume time unavailable');
      return null;
    }
  }

  /** After a failed or cancelled migration: wait for QEMU to restart the guest, `cont` if it does not. */
  async #ensureSourceRunning(wasRunning: boolean): Promise<boolean> {
    try {
      for (let i = 0; i < 20; i++) {
        const st = await this.#qmp.execute('query-status', undefined, runStatusReturn);
        if (st.running || !wasRunning) return st.running;
        if (st.status === 'postmigrate' || i === 19) {
          this.#log.warn({ status: st.status }, 'source guest still stopped after the migration ended; resuming it');
          await this.#qmp.execute('cont', undefined, emptyReturn);
          return (await this.#qmp.execute('query-status', undefined, runStatusReturn)).running;
        }
        await this.#sleep(50);
      }
    } catch (err) {
      this.#log.error({ err }, 'could not resume the source guest');
    }
    return false;
  }

  #finish(
    outcome: Pick<MigrationResult, 'phase' | 'reason' | 'message'>,
    info: QueryMigrate | null,
    sourceRunning: boolean,
    targetResumedAtMicros: number | null = null,
  ): MigrationResult {
    const ms = (v: number | undefined): number | null => (v === undefined ? null : Math.round(v));
    const stoppedAt = outcome.phase === 'Succeeded' ? this.#stoppedAtMicros : null;
    const result: MigrationResult = {
      migrationId: this.id,
      ...outcome,
      totalTimeMs: ms(info?.['total-time']),
      downtimeMs: outcome.phase === 'Succeeded' ? ms(info?.downtime) : null,
      setupTimeMs: ms(info?.['setup-time']),
      guestPauseMs: guestPauseMs(stoppedAt, targetResumedAtMicros),
      sourceStoppedAtMicros: stoppedAt,
      targetResumedAtMicros,
      transferredBytes: Math.round(Math.max(info?.ram?.transferred ?? 0, this.#progress?.transferredBytes ?? 0)),
      iterations: Math.round(Math.max(info?.ram?.['dirty-sync-count'] ?? 0, this.#progress?.iteration ?? 0)),
      postCopy: this.#postCopy,
      sourceRunning,
    };
    this.#result = result;
    if (this.#progress !== null) this.#progress = { ...this.#progress, phase: result.phase };
    this.#emitter.emit('event', { type: 'result', result });
    return result;
  }

  #elapsedMs(): number {
    return this.#nowMs() - this.#startedAtMs;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

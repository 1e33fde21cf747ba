// The migration controller's side of the launcher API: clients for the source and target
// launcher pods (the VM's token), what each says about one migration, and a follower of
// the source's progress stream per migration that keeps the latest report and asks for a
// reconcile when something new arrives (at most once a second for progress).
import type { Logger } from 'pino';
import {
  LauncherClient,
  LauncherHttpError,
  MigrationClient,
  type IncomingMigrationStatus,
  type MigrationEvent,
  type MigrationProgress,
  type MigrationResult,
  type PrepareIncomingRequestInput,
  type SourceMigrationStatus,
  type StartMigrationRequestInput,
  type Status,
} from '@keyvirt/launcher/api';
import type { Sleep } from '../runtime/clock.ts';
import type { Pod } from '../runtime/core-schemas.ts';
import type { SourceFacts, TargetFacts } from './phases.ts';

const REQUEST_TIMEOUT_MS = 3000;
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 2000;
const PROGRESS_NOTIFY_MS = 1000;

/** Reads a launcher pod's token (the VM's; both launchers of a VM share it). */
export interface LauncherTokens {
  cachedToken(pod: Pod): string | undefined;
  loadToken(pod: Pod): Promise<string | undefined>;
  baseUrl(podIp: string): string;
}

/** The launcher did not answer, or has no address yet. */
export class LauncherNotReachableError extends Error {
  override name = 'LauncherNotReachableError';
}

interface Stream {
  readonly migrationId: string;
  readonly podUid: string;
  readonly stop: AbortController;
  progress: MigrationProgress | undefined;
  result: MigrationResult | undefined;
  notifiedAt: number;
}

export interface MigrationLaunchersOptions {
  readonly tokens: LauncherTokens;
  readonly log: Logger;
  readonly sleep: Sleep;
  readonly now: () => number;
  readonly onChange: (key: string) => void;
}

export class MigrationLaunchers {
  readonly #o: MigrationLaunchersOptions;
  readonly #streams = new Map<string, Stream>();
  #stopped = false;

  constructor(options: MigrationLaunchersOptions) {
    this.#o = options;
  }

  async #endpoint(pod: Pod): Promise<{ baseUrl: string; token: string }> {
    const ip = pod.status?.podIP;
    if (ip === undefined) throw new LauncherNotReachableError(`pod ${pod.metadata.name} has no IP yet`);
    const token = this.#o.tokens.cachedToken(pod) ?? (await this.#o.tokens.loadToken(pod));
    if (token === undefined) throw new LauncherNotReachableError(`no token for pod ${pod.metadata.name}`);
    return { baseUrl: this.#o.tokens.baseUrl(ip), token };
  }

  async #migrationClient(pod: Pod): Promise<MigrationClient> {
    const e = await this.#endpoint(pod);
    return new MigrationClient({ baseUrl: e.baseUrl, token: e.token, timeoutMs: REQUEST_TIMEOUT_MS });
  }

  /** The launcher API URL of a pod (the source reads the target's RESUME time there). */
  async baseUrl(pod: Pod): Promise<string> {
    return (await this.#endpoint(pod)).baseUrl;
  }

  /** The launcher's own status (the target: WaitingForMigration once QEMU waits with -incoming). */
  async launcherStatus(pod: Pod): Promise<Status> {
    const e = await this.#endpoint(pod);
    return new LauncherClient({ baseUrl: e.baseUrl, token: e.token, timeoutMs: REQUEST_TIMEOUT_MS }).status();
  }

  /** Target: the incoming side, or undefined when nothing was prepared yet. */
  async incoming(pod: Pod): Promise<IncomingMigrationStatus | undefined> {
    try {
      return await (await this.#migrationClient(pod)).incoming();
    } catch (err) {
      if (err instanceof LauncherHttpError && err.status === 404) return undefined;
      throw err;
    }
  }

  async prepareIncoming(pod: Pod, request: PrepareIncomingRequestInput): Promise<IncomingMigrationStatus> {
    return (await this.#migrationClient(pod)).prepareIncoming(request);
  }

  async startSource(pod: Pod, request: StartMigrationRequestInput): Promise<SourceMigrationStatus> {
    return (await this.#migrationClient(pod)).start(request);
  }

  /** Asks the source to cancel; false when it refused (post-copy began, or it ended). */
  async cancelSource(pod: Pod): Promise<boolean> {
    try {
      await (await this.#migrationClient(pod)).cancel();
      return true;
    } catch (err) {
      if (err instanceof LauncherHttpError && (err.status === 409 || err.status === 404)) return false;
      throw err;
    }
  }

  /** What the source says about migration `migrationId`: the followed stream first, else GET current. */
  async sourceFacts(key: string, pod: Pod | undefined, migrationId: string): Promise<SourceFacts> {
    const stream = this.#streams.get(key);
    if (stream?.migrationId === migrationId && stream.result !== undefined) return { kind: 'ended', result: stream.result };
    if (pod === undefined || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return { kind: 'unreachable' };
    try {
      const current = await (await this.#migrationClient(pod)).current();
      if (current.migrationId !== migrationId) return { kind: 'none' };
      if (current.result !== null) return { kind: 'ended', result: current.result };
      return { kind: 'running', postCopy: current.progress?.postCopy === true };
    } catch (err) {
      if (err instanceof LauncherHttpError && err.status === 404) return { kind: 'none' };
      this.#o.log.debug({ err, pod: pod.metadata.name }, 'source launcher did not answer');
      return { kind: 'unreachable' };
    }
  }

  /** What the target says about the incoming side. */
  async targetFacts(pod: Pod | undefined): Promise<TargetFacts> {
    if (pod === undefined) return { kind: 'unreachable' };
    try {
      const incoming = await this.incoming(pod);
      return incoming === undefined ? { kind: 'none' } : { kind: 'incoming', phase: incoming.phase };
    } catch (err) {
      this.#o.log.debug({ err, pod: pod.metadata.name }, 'target launcher did not answer');
      return { kind: 'unreachable' };
    }
  }

  /** The latest progress the source streamed for migration `key`. */
  latestProgress(key: string): MigrationProgress | undefined {
    return this.#streams.get(key)?.progress;
  }

  /** Follows the source's event stream for the migration at `key` (a no-op when already following). */
  follow(key: string, pod: Pod, migrationId: string): void {
    if (this.#stopped) return;
    const podUid = pod.metadata.uid ?? '';
    const existing = this.#streams.get(key);
    if (existing?.migrationId === migrationId && existing.podUid === podUid) return;
    this.forget(key);
    const stream: Stream = { migrationId, podUid, stop: new AbortController(), progress: undefined, result: undefined, notifiedAt: 0 };
    this.#streams.set(key, stream);
    void this.#run(key, pod, stream);
  }

  forget(key: string): void {
    const s = this.#streams.get(key);
    if (s === undefined) return;
    s.stop.abort();
    this.#streams.delete(key);
  }

  stopAll(): void {
    this.#stopped = true;
    for (const key of [...this.#streams.keys()]) this.forget(key);
  }

  /** Keeps one event of the stream; false when the stream is done (the result, or another migration's events). */
  #take(key: string, s: Stream, event: MigrationEvent): boolean {
    if (event.type === 'result') {
      if (event.result.migrationId !== s.migrationId) return false;
      s.result = event.result;
      this.#o.onChange(key);
      return false;
    }
    if (event.progress.migrationId !== s.migrationId) return false;
    s.progress = event.progress;
    const now = this.#o.now();
    if (now - s.notifiedAt >= PROGRESS_NOTIFY_MS) {
      s.notifiedAt = now;
      this.#o.onChange(key);
    }
    return true;
  }

  async #run(key: string, pod: Pod, s: Stream): Promise<void> {
    const log = this.#o.log.child({ migration: key });
    let backoff = MIN_BACKOFF_MS;
    while (!s.stop.signal.aborted && s.result === undefined) {
      try {
        const client = await this.#migrationClient(pod);
        for await (const event of client.events(s.stop.signal)) {
          backoff = MIN_BACKOFF_MS;
          if (!this.#take(key, s, event)) break;
        }
      } catch (err) {
        if (s.stop.signal.aborted) break;
        log.debug({ err }, 'source migration stream interrupted');
      }
      if (s.result !== undefined || s.stop.signal.aborted) break;
      this.#o.onChange(key);
      await this.#o.sleep(backoff, s.stop.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

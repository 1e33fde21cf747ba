// One follower per running launcher: it checks the launcher's API version (`/v1/info`),
// then reads its event stream and keeps the latest status in memory, asking for a
// reconcile of the VM on every change. It reconnects with backoff while the pod lives;
// the controller starts and stops followers as launcher pods come and go. A restarted
// operator simply follows again: the stream starts with the current status.
// Every byte of the stream (the launcher's 500 ms heartbeat lines included) counts as
// hearing from the launcher: `silentMs` says for how long it has not been heard, and a
// follower crossing the silence threshold (or heard again after it) asks for a reconcile.
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { type Info, LauncherClient, type LifecycleAction, type Status, LauncherVersionError } from '@keyvirt/launcher/api';
import type { Sleep } from '../runtime/clock.ts';

/**
 * Reconnect backoff. The cap is short: a launcher that is starting answers within
 * seconds, and every second of backoff is a second added to the VM's start.
 */
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 2000;
/** Per request (not the event stream): a pod whose network is still being set up drops packets. */
const REQUEST_TIMEOUT_MS = 3000;
/** How often silence is checked. */
const SILENCE_CHECK_MS = 250;

export interface LauncherEndpoint {
  /** The launcher pod this endpoint belongs to: a new pod means a new follower. */
  readonly podUid: string;
  readonly baseUrl: string;
  readonly token: string;
}

export interface FollowerObserver {
  onLauncherStream(event: 'connected' | 'event' | 'disconnected'): void;
}

interface Follower {
  endpoint: LauncherEndpoint;
  client: LauncherClient;
  stop: AbortController;
  info: Info | undefined;
  latest: Status | undefined;
  connected: boolean;
  lastError: string | undefined;
  /** Monotonic time the stream last delivered anything; undefined until first heard. */
  lastHeard: number | undefined;
  /** Past the silence threshold at the last check. */
  silent: boolean;
}

export interface LauncherFollowersOptions {
  log: Logger;
  sleep: Sleep;
  /** Called when a launcher reports something new about the VM at `key`. */
  onChange: (key: string) => void;
  observer?: FollowerObserver;
  makeClient?: (endpoint: LauncherEndpoint, onActivity: () => void) => LauncherClient;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Silence after which a change is signalled (default 2000 ms). */
  silenceThresholdMs?: number;
}

export class LauncherFollowers {
  readonly #o: LauncherFollowersOptions;
  readonly #followers = new Map<string, Follower>();
  readonly #listeners: ((key: string) => void)[] = [];
  #stopped = false;

  constructor(opts: LauncherFollowersOptions) {
    this.#o = opts;
  }

  /** Follows the launcher at `endpoint` for VM `key` (a no-op when already following that pod). */
  ensure(key: string, endpoint: LauncherEndpoint): void {
    if (this.#stopped) return;
    const existing = this.#followers.get(key);
    if (existing !== undefined && existing.endpoint.podUid === endpoint.podUid && existing.endpoint.baseUrl === endpoint.baseUrl) return;
    if (existing !== undefined) this.forget(key);
    const ref: { follower?: Follower } = {};
    const onActivity = (): void => {
      if (ref.follower !== undefined) this.#heard(key, ref.follower);
    };
    const client =
      this.#o.makeClient?.(endpoint, onActivity) ??
      new LauncherClient({ baseUrl: endpoint.baseUrl, token: endpoint.token, timeoutMs: REQUEST_TIMEOUT_MS, fetch: activityFetch(onActivity) });
    const follower: Follower = { endpoint, client, stop: new AbortController(), info: undefined, latest: undefined, connected: false, lastError: undefined, lastHeard: undefined, silent: false };
    ref.follower = follower;
    this.#followers.set(key, follower);
    void this.#follow(key, follower);
  }

  /** Stops following the VM at `key`. */
  forget(key: string): void {
    const f = this.#followers.get(key);
    if (f === undefined) return;
    f.stop.abort();
    this.#followers.delete(key);
  }

  /** The latest launcher status of the pod `podUid`, if its follower has one. */
  latest(key: string, podUid: string): Status | undefined {
    const f = this.#followers.get(key);
    return f?.endpoint.podUid === podUid ? f.latest : undefined;
  }

  /**
   * How long the launcher of `podUid` has not been heard from (monotonic ms); undefined
   * when it is not followed or was never heard from (a launcher still starting).
   */
  silentMs(key: string, podUid: string): number | undefined {
    const f = this.#followers.get(key);
    if (f?.endpoint.podUid !== podUid || f.lastHeard === undefined) return undefined;
    return Math.max(0, this.#now() - f.lastHeard);
  }

  /** Also calls `listener` whenever the VM at a key changes (besides `onChange`). */
  addListener(listener: (key: string) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Checks every follower's silence until `signal` aborts: a launcher crossing the
   * threshold signals a change (its VM is then reconciled and shown unreachable).
   */
  async watchSilence(signal: AbortSignal): Promise<void> {
    const threshold = this.#o.silenceThresholdMs ?? 2000;
    while (!signal.aborted) {
      for (const [key, f] of this.#followers) {
        const silent = f.lastHeard !== undefined && this.#now() - f.lastHeard >= threshold;
        if (silent && !f.silent) {
          f.silent = true;
          this.#o.log.info({ vm: key, pod: f.endpoint.podUid, silentMs: Math.round(this.#now() - (f.lastHeard ?? 0)) }, 'launcher silent');
          this.#changed(key);
        }
      }
      await this.#o.sleep(SILENCE_CHECK_MS, signal);
    }
  }

  #now(): number {
    return this.#o.now?.() ?? performance.now();
  }

  #heard(key: string, f: Follower): void {
    f.lastHeard = this.#now();
    if (f.silent) {
      f.silent = false;
      this.#o.log.info({ vm: key, pod: f.endpoint.podUid }, 'launcher heard again');
      this.#changed(key);
    }
  }

  #changed(key: string): void {
    this.#o.onChange(key);
    for (const l of this.#listeners) l(key);
  }

  connected(key: string, podUid: string): boolean {
    const f = this.#followers.get(key);
    return f?.endpoint.podUid === podUid && f.connected;
  }

  /** Sends a lifecycle action to the launcher of `podUid`. */
  async action(key: string, podUid: string, action: LifecycleAction, gracePeriodSeconds?: number): Promise<Status> {
    const f = this.#followers.get(key);
    if (f?.endpoint.podUid !== podUid) throw new Error(`no launcher followed for ${key} pod ${podUid}`);
    const response =
      action === 'shutdown' ? await f.client.action('shutdown', gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds }) : await f.client.action(action);
    f.latest = response.status;
    return response.status;
  }

  keys(): string[] {
    return [...this.#followers.keys()];
  }

  /** Stops every follower (leadership lost or shutdown). */
  stopAll(): void {
    this.#stopped = true;
    for (const key of [...this.#followers.keys()]) this.forget(key);
  }

  async #follow(key: string, f: Follower): Promise<void> {
    const log = this.#o.log.child({ vm: key, pod: f.endpoint.podUid });
    let backoff = MIN_BACKOFF_MS;
    while (!f.stop.signal.aborted) {
      try {
        f.info ??= await f.client.info();
        for await (const event of f.client.events(f.stop.signal)) {
          this.#heard(key, f);
          if (!f.connected) {
            f.connected = true;
            backoff = MIN_BACKOFF_MS;
            this.#o.observer?.onLauncherStream('connected');
            log.debug('following launcher events');
          }
          if (event.type !== 'status') continue;
          this.#o.observer?.onLauncherStream('event');
          f.latest = event.status;
          this.#changed(key);
        }
      } catch (err) {
        if (f.stop.signal.aborted) break;
        const message = err instanceof Error ? err.message : String(err);
        if (message !== f.lastError) log.info({ err }, 'launcher not reachable, retrying');
        f.lastError = message;
        if (err instanceof LauncherVersionError) backoff = 30_000;
      }
      if (f.connected) {
        f.connected = false;
        this.#o.observer?.onLauncherStream('disconnected');
        this.#changed(key);
      }
      await this.#o.sleep(backoff, f.stop.signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/**
 * fetch that reports every chunk of an event stream's body as it arrives: heartbeat
 * lines never reach the parsed stream, yet they prove the launcher alive.
 */
export function activityFetch(onActivity: () => void, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const response = await base(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (response.body === null || !url.endsWith('/v1/events')) return response;
    const tap = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        onActivity();
        controller.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(tap), { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

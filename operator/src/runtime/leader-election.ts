// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: a candidate
// takes the lease when it is free or when its holder has not renewed it for a whole
// lease duration *as observed on this candidate's clock* (no clock-skew trust), renews
// it every retry period, and gives up leadership when it could not renew within the
// renew deadline. On a clean shutdown the leader releases the lease so that a standby
// takes over at once.
// The renew deadline is a timer, not a check made when a request returns: it runs from
// the start of the last successful renewal, and when it fires the leader stops leading
// at once — the work's signal aborts and the renewal in flight is cancelled — even if
// that request hangs. Since renewDeadline < leaseDuration (enforced) and a candidate
// waits a whole leaseDuration after it last saw the record change, the old leader has
// stopped before anyone else may take the lease (client-go's contract, ADR 0102).
// A leader renews with one PUT on the lease as it last wrote it (client-go's fast path);
// any failure of that PUT (a conflict: someone else wrote the lease) reads the lease first.
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock, Sleep, TimerHandle } from './clock.ts';
import { type RequestOptions, isConflict, isNotFound, isAlreadyExists } from './kube-client.ts';
import { coreTypes, objectPath, collectionPath } from './resource.ts';

const leaseSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional(), resourceVersion: z.string().optional() }),
  spec: z
    .object({
      holderIdentity: z.string().nullable().optional(),
      leaseDurationSeconds: z.number().nullable().optional(),
      acquireTime: z.string().nullable().optional(),
      renewTime: z.string().nullable().optional(),
      leaseTransitions: z.number().nullable().optional(),
    })
    .optional(),
});
type Lease = z.infer<typeof leaseSchema>;

export interface LeaseClient {
  request(method: 'GET' | 'POST' | 'PUT', path: string, options?: RequestOptions): Promise<unknown>;
}

export interface LeaderElectionOptions {
  client: LeaseClient;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  clock: Clock;
  sleep: Sleep;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onLeadershipChange?: (leading: boolean) => void;
}

/** The options contradict each other (client-go: leaseDuration > renewDeadline > retryPeriod). */
export class LeaderElectionConfigError extends Error {
  override name = 'LeaderElectionConfigError';
}

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #durationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryMs: number;
  #observedRecord = '';
  #observedAt = 0;
  #leading = false;
  /** Clock time at which the last successful acquire or renewal started. */
  #renewedFrom = 0;
  /** The lease as this leader's last write left it: the next renewal writes over it without reading it. */
  #held: Lease | undefined;

  constructor(opts: LeaderElectionOptions) {
    this.#o = opts;
    this.#durationMs = opts.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.#renewDeadlineMs < this.#durationMs)) {
      throw new LeaderElectionConfigError(`renewDeadlineMs (${this.#renewDeadlineMs}) must be shorter than leaseDurationMs (${this.#durationMs})`);
    }
    if (!(this.#retryMs < this.#renewDeadlineMs)) {
      throw new LeaderElectionConfigError(`retryPeriodMs (${this.#retryMs}) must be shorter than renewDeadlineMs (${this.#renewDeadlineMs})`);
    }
  }

  get leading(): boolean {
    return this.#leading;
  }

  /**
   * Campaigns until leadership is won, runs `lead` with a signal that aborts when
   * leadership is lost or `signal` aborts, then releases the lease (on a clean stop).
   * Resolves with 'lost' when leadership was lost, 'stopped' when `signal` aborted.
   */
  async run(signal: AbortSignal, lead: (leading: AbortSignal) => Promise<void>): Promise<'lost' | 'stopped'> {
    const { log } = this.#o;
    while (!signal.aborted) {
      if (await this.#tryAcquireOrRenew(signal)) break;
      await this.#o.sleep(this.#retryMs, signal);
    }
    if (signal.aborted) return 'stopped';
    this.#setLeading(true);
    log.info({ identity: this.#o.identity, lease: this.#o.name }, 'became leader');
    const leadership = new AbortController();
    const stop = (): void => leadership.abort();
    signal.addEventListener('abort', stop, { once: true });
    let failure: { err: unknown } | undefined;
    const work = lead(leadership.signal).catch((err: unknown) => {
      failure = { err };
      leadership.abort();
    });
    const lost = await this.#renewLoop(leadership);
    leadership.abort();
    signal.removeEventListener('abort', stop);
    this.#setLeading(false);
    if (lost) log.error({ identity: this.#o.identity, renewDeadlineMs: this.#renewDeadlineMs }, 'leadership lost');
    await work;
    if (lost) return 'lost';
    await this.#release();
    if (failure !== undefined) throw failure.err;
    return 'stopped';
  }

  #setLeading(leading: boolean): void {
    this.#leading = leading;
    if (!leading) this.#held = undefined;
    this.#o.onLeadershipChange?.(leading);
  }

  /**
   * Renews every retry period until `leadership` aborts (false) or the renew deadline
   * passes (true). The deadline is a timer armed from the start of the last successful
   * renewal; when it fires it aborts `leadership`, which also cancels the request in flight.
   */
  async #renewLoop(leadership: AbortController): Promise<boolean> {
    const { clock } = this.#o;
    let expired = false;
    let timer: TimerHandle | undefined;
    const arm = (): void => {
      timer?.cancel();
      timer = clock.schedule(this.#renewedFrom + this.#renewDeadlineMs - clock.now(), () => {
        expired = true;
        leadership.abort();
      });
    };
    arm();
    try {
      while (!leadership.signal.aborted) {
        await this.#o.sleep(this.#retryMs, leadership.signal);
        if (leadership.signal.aborted) break;
        if ((await this.#tryAcquireOrRenew(leadership.signal, this.#renewedFrom + this.#renewDeadlineMs)) && !expired) arm();
      }
    } finally {
      timer?.cancel();
    }
    return expired;
  }

  #path(): string {
    return objectPath(coreTypes.lease, { namespace: this.#o.namespace, name: this.#o.name });
  }

  /**
   * One attempt to take or keep the lease; true when this candidate holds it now. Each
   * request's deadline is the renew deadline (`until`, on the clock) when leading, else
   * one renew deadline from now.
   */
  async #tryAcquireOrRenew(signal: AbortSignal, until?: number): Promise<boolean> {
    const { client, identity, log, clock } = this.#o;
    const now = clock.now();
    const timeoutMs = Math.max(1, Math.min(this.#renewDeadlineMs, (until ?? now + this.#renewDeadlineMs) - now));
    if (await this.#renewHeld(signal, now, timeoutMs)) return true;
    if (signal.aborted) return false;
    try {
      let lease: Lease;
      try {
        lease = leaseSchema.parse(await client.request('GET', this.#path(), { signal, timeoutMs }));
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const created = await client.request('POST', collectionPath(coreTypes.lease, this.#o.namespace), {
          body: this.#record(undefined, now),
          signal,
          timeoutMs,
        });
        this.#held = leaseSchema.safeParse(created).data;
        this.#renewedFrom = now;
        return true;
      }
      const spec = lease.spec ?? {};
      const record = `${spec.holderIdentity ?? ''}|${spec.renewTime ?? ''}`;
      if (record !== this.#observedRecord) {
        this.#observedRecord = record;
        this.#observedAt = now;
      }
      const holder = spec.holderIdentity ?? '';
      const durationMs = (spec.leaseDurationSeconds ?? this.#durationMs / 1000) * 1000;
      if (holder !== '' && holder !== identity && now < this.#observedAt + durationMs) return false;
      this.#held = leaseSchema.safeParse(await client.request('PUT', this.#path(), { body: this.#record(lease, now), signal, timeoutMs })).data;
      this.#renewedFrom = now;
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      if (isConflict(err) || isAlreadyExists(err)) return false;
      log.warn({ err }, 'lease acquire/renew failed');
      return false;
    }
  }

  /** The leader's renewal without a read: one PUT over the lease as it last wrote it. False when not leading or when that write failed. */
  async #renewHeld(signal: AbortSignal, now: number, timeoutMs: number): Promise<boolean> {
    const held = this.#held;
    this.#held = undefined;
    if (!this.#leading || held === undefined) return false;
    try {
      this.#held = leaseSchema.parse(await this.#o.client.request('PUT', this.#path(), { body: this.#record(held, now), signal, timeoutMs }));
      this.#renewedFrom = now;
      return true;
    } catch (err) {
      if (!signal.aborted) this.#o.log.debug({ err }, 'renewal without reading the lease failed; reading it');
      return false;
    }
  }

  #record(existing: Lease | undefined, now: number): unknown {
    const spec = existing?.spec ?? {};
    const mine = spec.holderIdentity === this.#o.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.#o.name,
        namespace: this.#o.namespace,
        ...(existing?.metadata.resourceVersion !== undefined ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      spec: {
        holderIdentity: this.#o.identity,
        leaseDurationSeconds: Math.ceil(this.#durationMs / 1000),
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine || existing === undefined ? 0 : 1),
      },
    };
  }

  async #release(): Promise<void> {
    const timeoutMs = this.#renewDeadlineMs;
    try {
      const lease = leaseSchema.parse(await this.#o.client.request('GET', this.#path(), { timeoutMs }));
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      await this.#o.client.request('PUT', this.#path(), {
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.#o.name, namespace: this.#o.namespace, resourceVersion: lease.metadata.resourceVersion },
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.#o.clock.now()) },
        },
        timeoutMs,
      });
      this.#o.log.info('lease released');
    } catch (err) {
      this.#o.log.warn({ err }, 'lease release failed');
    }
  }
}

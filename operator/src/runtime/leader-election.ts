// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: a candidate
// takes the lease when it is free or when its holder has not renewed it for a whole
// lease duration *as observed on this candidate's clock* (no clock-skew trust), renews
// it every retry period, and gives up leadership when it could not renew within the
// renew deadline. On a clean shutdown the leader releases the lease so that a standby
// takes over at once.
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock, Sleep } from './clock.ts';
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

  constructor(opts: LeaderElectionOptions) {
    this.#o = opts;
    this.#durationMs = opts.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryMs = opts.retryPeriodMs ?? 2_000;
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
    const lost = await this.#renewLoop(leadership.signal);
    leadership.abort();
    signal.removeEventListener('abort', stop);
    await work;
    this.#setLeading(false);
    if (lost) {
      log.error({ identity: this.#o.identity }, 'leadership lost');
      return 'lost';
    }
    await this.#release();
    if (failure !== undefined) throw failure.err;
    return 'stopped';
  }

  #setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#o.onLeadershipChange?.(leading);
  }

  /** Renews until the signal aborts (false) or renewal fails past the deadline (true). */
  async #renewLoop(signal: AbortSignal): Promise<boolean> {
    let lastRenew = this.#o.clock.now();
    while (!signal.aborted) {
      await this.#o.sleep(this.#retryMs, signal);
      if (signal.aborted) return false;
      if (await this.#tryAcquireOrRenew(signal)) {
        lastRenew = this.#o.clock.now();
      } else if (this.#o.clock.now() - lastRenew >= this.#renewDeadlineMs) {
        return true;
      }
    }
    return false;
  }

  #path(): string {
    return objectPath(coreTypes.lease, { namespace: this.#o.namespace, name: this.#o.name });
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { client, identity, log, clock } = this.#o;
    const now = clock.now();
    try {
      let lease: Lease;
      try {
        lease = leaseSchema.parse(await client.request('GET', this.#path(), { signal }));
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await client.request('POST', collectionPath(coreTypes.lease, this.#o.namespace), {
          body: this.#record(undefined, now),
          signal,
        });
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
      await client.request('PUT', this.#path(), { body: this.#record(lease, now), signal });
      return true;
    } catch (err) {
      if (signal.aborted) return false;
      if (isConflict(err) || isAlreadyExists(err)) return false;
      log.warn({ err }, 'lease acquire/renew failed');
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
    try {
      const lease = leaseSchema.parse(await this.#o.client.request('GET', this.#path()));
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      await this.#o.client.request('PUT', this.#path(), {
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.#o.name, namespace: this.#o.namespace, resourceVersion: lease.metadata.resourceVersion },
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.#o.clock.now()) },
        },
      });
      this.#o.log.info('lease released');
    } catch (err) {
      this.#o.log.warn({ err }, 'lease release failed');
    }
  }
}

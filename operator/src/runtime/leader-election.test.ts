import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { sleepOn } from './clock.ts';
import { KubeApiError, type RequestOptions } from './kube-client.ts';
import { LeaderElectionConfigError, LeaderElector, type LeaderElectionOptions, type LeaseClient } from './leader-election.ts';
import { ManualClock } from './manual-clock.ts';

interface StoredLease {
  resourceVersion: number;
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string; leaseTransitions?: number };
}

/** One Lease with the API server's optimistic concurrency (409 on a stale resourceVersion). */
class LeaseStore implements LeaseClient {
  lease: StoredLease | undefined;
  failing = false;
  readonly requests: string[] = [];

  request(method: 'GET' | 'POST' | 'PUT', path: string, options?: RequestOptions): Promise<unknown> {
    this.requests.push(method);
    if (this.failing) return Promise.reject(new Error('connection refused'));
    const body = options?.body as { metadata: { resourceVersion?: string }; spec: StoredLease['spec'] } | undefined;
    const meta = { name: 'op', namespace: 'keyvirt-system' };
    if (method === 'GET') {
      if (this.lease === undefined) return Promise.reject(new KubeApiError(404, 'NotFound', 'no lease', { method, path }));
      return Promise.resolve({ metadata: { ...meta, resourceVersion: String(this.lease.resourceVersion) }, spec: this.lease.spec });
    }
    if (body === undefined) return Promise.reject(new Error('no body'));
    if (method === 'POST') {
      if (this.lease !== undefined) return Promise.reject(new KubeApiError(409, 'AlreadyExists', 'exists', { method, path }));
      this.lease = { resourceVersion: 1, spec: body.spec };
      return Promise.resolve({ metadata: { ...meta, resourceVersion: '1' }, spec: body.spec });
    }
    if (this.lease === undefined || body.metadata.resourceVersion !== String(this.lease.resourceVersion)) {
      return Promise.reject(new KubeApiError(409, 'Conflict', 'modified', { method, path }));
    }
    this.lease = { resourceVersion: this.lease.resourceVersion + 1, spec: body.spec };
    return Promise.resolve({ metadata: { ...meta, resourceVersion: String(this.lease.resourceVersion) }, spec: body.spec });
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/** One candidate's connection to the store: it can be made to hang (a stalled API server or proxy). */
class Connection implements LeaseClient {
  hanging = false;
  /** Requests sent while hanging that are still waiting. */
  pending = 0;
  /** The deadline of every request, as sent. */
  readonly timeouts: (number | undefined)[] = [];
  readonly #store: LeaseStore;
  constructor(store: LeaseStore) {
    this.#store = store;
  }
  request(method: 'GET' | 'POST' | 'PUT', path: string, options?: RequestOptions): Promise<unknown> {
    this.timeouts.push(options?.timeoutMs);
    if (!this.hanging) return this.#store.request(method, path, options);
    this.pending++;
    // Like a stalled TCP connection: nothing comes back until the caller gives up.
    return new Promise((_resolve, reject) => {
      options?.signal?.addEventListener('abort', () => {
        this.pending--;
        reject(new Error('aborted'));
      }, { once: true });
    });
  }
}

function elector(store: LeaseClient, clock: ManualClock, identity: string): LeaderElector {
  return new LeaderElector({
    client: store,
    namespace: 'keyvirt-system',
    name: 'op',
    identity,
    log: pino({ level: 'silent' }),
    clock,
    sleep: sleepOn(clock),
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
  });
}

/** Advances the clock step by step, letting promises run in between. */
async function advance(clock: ManualClock, ms: number, step = 500): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step);
    await settle();
  }
}

void describe('LeaderElector', () => {
  void it('one candidate leads while it renews; a clean stop hands the lease over at the next retry', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(1_000_000);
    const a = elector(store, clock, 'a');
    const b = elector(store, clock, 'b');
    const stopA = new AbortController();
    const stopB = new AbortController();
    const leading: string[] = [];
    const runA = a.run(stopA.signal, async (s) => {
      leading.push('a');
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await settle();
    const runB = b.run(stopB.signal, async (s) => {
      leading.push('b');
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await advance(clock, 20_000);
    assert.deepEqual(leading, ['a'], 'b stays a candidate while a renews');
    assert.equal(store.lease?.spec.holderIdentity, 'a');

    stopA.abort();
    await runA;
    assert.equal(store.lease?.spec.holderIdentity, '', 'a clean stop releases the lease');
    await advance(clock, 3_000);
    assert.deepEqual(leading, ['a', 'b'], 'b takes a released lease at its next retry');
    assert.equal(store.lease?.spec.leaseTransitions, 1);
    stopB.abort();
    assert.equal(await runB, 'stopped');
  });

  void it('a leader renews with one PUT per retry period; when someone else wrote the lease, it reads the lease and stops leading', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(3_000_000);
    const a = elector(store, clock, 'a');
    let leadingSignal: AbortSignal | undefined;
    const run = a.run(new AbortController().signal, async (s) => {
      leadingSignal = s;
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await settle();
    assert.deepEqual(store.requests, ['GET', 'POST'], 'no lease yet: created');
    await advance(clock, 6_000);
    assert.deepEqual(store.requests.slice(2), ['PUT', 'PUT', 'PUT'], 'renewals read nothing');
    // Another writer (an operator that took the lease while this one was cut off, or an admin).
    if (store.lease === undefined) throw new Error('no lease');
    store.lease = { resourceVersion: store.lease.resourceVersion + 1, spec: { ...store.lease.spec, holderIdentity: 'b', renewTime: '2026-11-30T00:00:00.000000Z' } };
    store.requests.length = 0;
    await advance(clock, 2_000);
    assert.deepEqual(store.requests, ['PUT', 'GET'], 'the blind PUT conflicts; the lease is read and held by b, so nothing is written');
    await advance(clock, 10_000);
    assert.equal(leadingSignal?.aborted, true, 'a stops leading at its renew deadline');
    assert.equal(await run, 'lost');
    assert.equal(store.lease.spec.holderIdentity, 'b');
  });

  void it('a crashed holder (no release) is replaced after the lease duration, not before', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(5_000_000);
    store.lease = { resourceVersion: 7, spec: { holderIdentity: 'dead', leaseDurationSeconds: 15, renewTime: '2026-01-01T00:00:00.000000Z' } };
    const b = elector(store, clock, 'b');
    const stop = new AbortController();
    let ledAt: number | undefined;
    const run = b.run(stop.signal, async (s) => {
      ledAt = clock.now();
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await advance(clock, 14_000);
    assert.equal(ledAt, undefined, 'the lease has not expired as b observed it');
    await advance(clock, 4_000);
    assert.ok(ledAt !== undefined && ledAt - 5_000_000 >= 15_000, `took over at +${String(ledAt === undefined ? NaN : ledAt - 5_000_000)} ms`);
    stop.abort();
    await run;
  });

  void it('gives up leadership when it cannot renew within the renew deadline', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(9_000_000);
    const a = elector(store, clock, 'a');
    let leadingSignal: AbortSignal | undefined;
    const run = a.run(new AbortController().signal, async (s) => {
      leadingSignal = s;
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await advance(clock, 4_000);
    assert.equal(leadingSignal?.aborted, false);
    store.failing = true;
    await advance(clock, 12_000);
    assert.equal(leadingSignal?.aborted, true, 'the work is told to stop');
    assert.equal(await run, 'lost');
  });

  void it('stops leading at the renew deadline while a renewal hangs, and cancels that renewal', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(20_000_000);
    const conn = new Connection(store);
    const a = elector(conn, clock, 'a');
    let stoppedAt: number | undefined;
    const run = a.run(new AbortController().signal, async (s) => {
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
      stoppedAt = clock.now();
    });
    await advance(clock, 5_000);
    const lastRenewal = store.lease?.spec.renewTime;
    conn.hanging = true;
    const hungAt = clock.now();
    await advance(clock, 14_000, 100);
    assert.ok(stoppedAt !== undefined, 'the leader kept leading while its renewal hung');
    const renewedAt = Date.parse(lastRenewal ?? '');
    assert.ok(stoppedAt - renewedAt <= 10_000, `stopped ${stoppedAt - renewedAt} ms after its last renewal (deadline 10 s)`);
    assert.ok(stoppedAt - hungAt < 10_000);
    assert.equal(conn.pending, 0, 'the hanging renewal was cancelled');
    assert.equal(await run, 'lost');
  });

  void it('a leader whose renewals hang has stopped before a candidate takes the lease over', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(30_000_000);
    const connA = new Connection(store);
    const a = elector(connA, clock, 'a');
    const b = elector(store, clock, 'b');
    const stopB = new AbortController();
    const timeline: { who: string; what: string; at: number }[] = [];
    const work = (who: string) => async (s: AbortSignal): Promise<void> => {
      timeline.push({ who, what: 'leads', at: clock.now() });
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
      timeline.push({ who, what: 'stops', at: clock.now() });
    };
    const runA = a.run(new AbortController().signal, work('a'));
    await settle();
    const runB = b.run(stopB.signal, work('b'));
    await advance(clock, 6_000, 100);
    connA.hanging = true;
    await advance(clock, 30_000, 100);
    const aStops = timeline.find((e) => e.who === 'a' && e.what === 'stops');
    const bLeads = timeline.find((e) => e.who === 'b' && e.what === 'leads');
    assert.ok(aStops !== undefined && bLeads !== undefined, JSON.stringify(timeline));
    assert.ok(aStops.at < bLeads.at, `a stopped at ${aStops.at}, b led at ${bLeads.at}`);
    assert.equal(await runA, 'lost');
    stopB.abort();
    await runB;
  });

  void it('gives every lease request a deadline no longer than the renew deadline', async () => {
    const store = new LeaseStore();
    const clock = new ManualClock(40_000_000);
    const conn = new Connection(store);
    const stop = new AbortController();
    const run = elector(conn, clock, 'a').run(stop.signal, async (s) => {
      await new Promise((r) => s.addEventListener('abort', r, { once: true }));
    });
    await advance(clock, 8_000);
    stop.abort();
    await run;
    assert.ok(conn.timeouts.length > 4);
    for (const t of conn.timeouts) assert.ok(t !== undefined && t > 0 && t <= 10_000, `a request with deadline ${String(t)}`);
  });

  void it('refuses a renew deadline that is not shorter than the lease duration', () => {
    const base: LeaderElectionOptions = {
      client: new LeaseStore(),
      namespace: 'ns',
      name: 'op',
      identity: 'a',
      log: pino({ level: 'silent' }),
      clock: new ManualClock(0),
      sleep: sleepOn(new ManualClock(0)),
    };
    assert.throws(() => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }), LeaderElectionConfigError);
    assert.throws(() => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }), LeaderElectionConfigError);
    assert.doesNotThrow(() => new LeaderElector({ ...base }));
  });
});

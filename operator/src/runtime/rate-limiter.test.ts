import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from './manual-clock.ts';
import { RateLimitAbortedError, TokenBucket } from './rate-limiter.ts';

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

void describe('TokenBucket', () => {
  void it('lets a burst through at once, then paces requests at qps', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ qps: 10, burst: 3 }, clock);
    const done: number[] = [];
    for (let i = 0; i < 6; i++) void bucket.acquire('ordinary').then(() => done.push(i));
    await flush();
    assert.deepEqual(done, [0, 1, 2]);
    clock.advance(99);
    await flush();
    assert.deepEqual(done, [0, 1, 2]);
    clock.advance(1);
    await flush();
    assert.deepEqual(done, [0, 1, 2, 3]);
    clock.advance(200);
    await flush();
    assert.deepEqual(done, [0, 1, 2, 3, 4, 5]);
    assert.equal(bucket.waiting, 0);
  });

  void it('gives the next token to a waiting status write before waiting ordinary requests', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ qps: 10, burst: 1 }, clock);
    const order: string[] = [];
    await bucket.acquire('ordinary');
    for (const name of ['create-1', 'create-2', 'create-3']) void bucket.acquire('ordinary').then(() => order.push(name));
    void bucket.acquire('status').then(() => order.push('status'));
    clock.advance(100);
    await flush();
    clock.advance(100);
    await flush();
    assert.deepEqual(order, ['status', 'create-1']);
  });

  void it('drops a waiter whose signal aborts, and refuses an aborted one', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1 }, clock);
    await bucket.acquire('ordinary');
    const stop = new AbortController();
    const waiting = bucket.acquire('ordinary', stop.signal);
    stop.abort();
    await assert.rejects(waiting, RateLimitAbortedError);
    assert.equal(bucket.waiting, 0);
    await assert.rejects(bucket.acquire('status', stop.signal), RateLimitAbortedError);
  });

  void it('refuses a limit that would never let anything through', () => {
    assert.throws(() => new TokenBucket({ qps: 0, burst: 1 }, new ManualClock()), RangeError);
    assert.throws(() => new TokenBucket({ qps: 5, burst: 0 }, new ManualClock()), RangeError);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from './manual-clock.ts';
import { ExponentialBackoff, WorkQueue } from './work-queue.ts';

function queue(clock = new ManualClock()): { q: WorkQueue; clock: ManualClock } {
  return { q: new WorkQueue({ clock, backoff: new ExponentialBackoff(100, 1000) }), clock };
}

/** Takes every key that is ready now, without blocking. */
async function drain(q: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (q.depth > 0) {
    const k = await q.get();
    if (k === undefined) break;
    keys.push(k);
  }
  return keys;
}

void describe('WorkQueue', () => {
  void it('keeps FIFO order through thousands of keys taken while others are added', async () => {
    const { q } = queue();
    const taken: string[] = [];
    for (let i = 0; i < 5000; i++) {
      q.add(`ns/vm-${i}`);
      if (i % 3 === 2) {
        const k = await q.get();
        if (k !== undefined) {
          taken.push(k);
          q.done(k);
        }
      }
    }
    assert.equal(q.depth, 5000 - taken.length);
    for (const k of await drain(q)) taken.push(k);
    assert.deepEqual(taken, Array.from({ length: 5000 }, (_, i) => `ns/vm-${i}`));
    q.add('ns/again');
    assert.deepEqual(await drain(q), ['ns/again']);
  });

  void it('merges repeated adds of a waiting key into one entry, in FIFO order', async () => {
    const { q } = queue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    q.add('ns/a');
    assert.equal(q.depth, 2);
    assert.deepEqual(await drain(q), ['ns/a', 'ns/b']);
  });

  void it('never hands one key to two workers; an add during processing requeues it after done', async () => {
    const { q } = queue();
    q.add('ns/a');
    const first = await q.get();
    assert.equal(first, 'ns/a');
    q.add('ns/a');
    q.add('ns/a');
    assert.equal(q.depth, 0, 'the key in process is not handed out again');
    q.done('ns/a');
    assert.equal(q.depth, 1, 'the merged re-add is queued once');
    assert.equal(await q.get(), 'ns/a');
    q.done('ns/a');
    assert.equal(q.depth, 0);
  });

  void it('wakes a waiting worker when a key arrives', async () => {
    const { q } = queue();
    const pending = q.get();
    q.add('ns/x');
    assert.equal(await pending, 'ns/x');
  });

  void it('delays addAfter until the clock reaches the deadline; the earliest deadline wins', async () => {
    const { q, clock } = queue();
    q.addAfter('ns/a', 5000);
    q.addAfter('ns/a', 2000);
    q.addAfter('ns/a', 9000);
    assert.equal(q.delayed, 1);
    clock.advance(1999);
    assert.equal(q.depth, 0);
    clock.advance(1);
    assert.deepEqual(await drain(q), ['ns/a']);
    clock.advance(10_000);
    assert.equal(q.depth, 0, 'the later deadlines were dropped, not queued again');
  });

  void it('backs off exponentially per key on rate-limited adds, capped, and forgets on success', () => {
    const { q, clock } = queue();
    const delays = [1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('ns/a'));
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
    assert.equal(q.numRequeues('ns/a'), 6);
    assert.equal(q.addRateLimited('ns/b'), 100, 'backoff is per key');
    q.forget('ns/a');
    assert.equal(q.numRequeues('ns/a'), 0);
    assert.equal(q.addRateLimited('ns/a'), 100);
    clock.advance(100);
    assert.equal(q.depth, 2);
  });

  void it('shutDown releases waiting workers and waits for keys in process', async () => {
    const { q, clock } = queue();
    q.add('ns/a');
    assert.equal(await q.get(), 'ns/a');
    const idle = q.get();
    q.addAfter('ns/c', 100);
    let drained = false;
    const stopped = q.shutDown().then(() => (drained = true));
    assert.equal(await idle, undefined);
    await Promise.resolve();
    assert.equal(drained, false, 'a key is still in process');
    q.done('ns/a');
    await stopped;
    assert.equal(drained, true);
    q.add('ns/b');
    clock.advance(1000);
    assert.equal(q.depth, 0, 'adds after shutdown and pending delays are dropped');
    assert.equal(await q.get(), undefined);
  });

  void it('hands out no queued key after shutDown (a manager that lost its lease stops writing at once)', async () => {
    const { q } = queue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/c');
    assert.equal(await q.get(), 'ns/a');
    q.add('ns/a');
    const stopped = q.shutDown();
    assert.equal(await q.get(), undefined);
    assert.equal(q.depth, 0);
    q.done('ns/a');
    await stopped;
    assert.equal(await q.get(), undefined, 'a key added while in process is not queued again');
  });
});

void describe('ExponentialBackoff', () => {
  void it('doubles from the base up to the cap without overflowing', () => {
    const b = new ExponentialBackoff(5, 60_000);
    let last = 0;
    for (let i = 0; i < 200; i++) last = b.next('k');
    assert.equal(last, 60_000);
    assert.equal(b.failures('k'), 200);
  });
});

// A term of the manager over the process's caches: when it ends, its controllers leave the
// informers; the next term gets the same informers, already whole, lists nothing, and its
// fresh controllers are handed every cached object.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { Controller, type Reconciler } from './controller.ts';
import type { ListWatchClient } from './informer.ts';
import type { WatchStream } from './kube-client.ts';
import { ManagerCaches } from './manager-caches.ts';
import { Manager } from './manager.ts';
import { ManualClock } from './manual-clock.ts';
import { coreTypes } from './resource.ts';

const log = pino({ level: 'silent' });
const schema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }) });

/** One list of three pods, then watches that deliver what `push` sends and hang until aborted. */
class CountingClient implements ListWatchClient {
  lists = 0;
  #onEvent: ((event: unknown) => void) | undefined;

  request(): Promise<unknown> {
    this.lists += 1;
    const items = ['a', 'b', 'c'].map((name) => ({ metadata: { name, namespace: 'ns', resourceVersion: '1' } }));
    return Promise.resolve({ metadata: { resourceVersion: '1' }, items });
  }

  watch(_path: string, _query: Record<string, unknown>, handlers: { onEvent: (event: unknown) => void }, signal: AbortSignal): Promise<WatchStream> {
    this.#onEvent = handlers.onEvent;
    return Promise.resolve({ done: new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })) });
  }

  push(event: unknown): void {
    assert.ok(this.#onEvent, 'no watch open');
    this.#onEvent(event);
  }
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'condition not reached');
}

/** A term's wiring: one controller over the pod cache that records the keys it reconciles. */
function term(caches: ManagerCaches, clock: ManualClock): { manager: Manager; reconciled: string[] } {
  const reject = (): Promise<never> => Promise.reject(new Error('no leases in this test'));
  const manager = new Manager({ log, client: { request: reject }, clock, caches, metrics: { onLeadershipChange: () => undefined } });
  const reconciled: string[] = [];
  const reconciler: Reconciler = {
    reconcile: (_ctx, key) => {
      reconciled.push(key);
      return Promise.resolve({});
    },
  };
  const controller = new Controller({ name: 'pods', reconciler, log, clock, workers: 1 });
  controller.watch(manager.informer(coreTypes.pod, schema));
  manager.addController(controller);
  return { manager, reconciled };
}

void describe('Manager terms over the process caches', () => {
  void it('a new term keeps the informer and its store, lists nothing, and its controllers see every cached object; the old term hears nothing more', async () => {
    const client = new CountingClient();
    const clock = new ManualClock();
    const caches = new ManagerCaches({ log, client, sleep: () => Promise.resolve() });
    const cachesStop = new AbortController();
    const first = term(caches, clock);
    const informer = first.manager.informer(coreTypes.pod, schema);
    const tallied: string[] = [];
    first.manager.addHandlers(informer, { onAdd: (p) => tallied.push(p.metadata.name) });
    const cachesRun = caches.run(cachesStop.signal);
    const firstStop = new AbortController();
    const firstRun = first.manager.run(firstStop.signal);
    await until(() => first.reconciled.length === 3);
    assert.equal(informer.handlerCount, 2, "the controller's handlers and the term's own");
    assert.deepEqual(tallied.sort(), ['a', 'b', 'c']);
    firstStop.abort();
    assert.equal(await firstRun, 'stopped');
    assert.equal(informer.handlerCount, 0, 'the ended term took its handlers off the informer');

    const second = term(caches, clock);
    assert.equal(second.manager.informer(coreTypes.pod, schema), informer, 'the same informer, and with it the same store');
    const secondStop = new AbortController();
    const secondRun = second.manager.run(secondStop.signal);
    await until(() => second.reconciled.length === 3);
    assert.deepEqual(second.reconciled.sort(), ['ns/a', 'ns/b', 'ns/c'], 'handed every cached object');
    client.push({ type: 'ADDED', object: { metadata: { name: 'd', namespace: 'ns', resourceVersion: '2' } } });
    await until(() => second.reconciled.includes('ns/d'));
    assert.equal(client.lists, 1, 'one list for the life of the caches');
    assert.equal(informer.size, 4);
    assert.deepEqual(first.reconciled.sort(), ['ns/a', 'ns/b', 'ns/c'], 'the ended term reconciles nothing more');
    assert.deepEqual(tallied.sort(), ['a', 'b', 'c'], "nor do the ended term's own handlers hear of d");
    secondStop.abort();
    await secondRun;
    cachesStop.abort();
    await cachesRun;
  });

  void it('starts an informer asked for while the caches run', async () => {
    const client = new CountingClient();
    const caches = new ManagerCaches({ log, client, sleep: () => Promise.resolve() });
    const stop = new AbortController();
    const running = caches.run(stop.signal);
    assert.deepEqual(caches.kinds(), []);
    const informer = caches.informer(coreTypes.pod, schema);
    await caches.waitForSync(stop.signal);
    assert.equal(informer.size, 3);
    assert.deepEqual(caches.unsynced(), []);
    stop.abort();
    await running;
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { Controller, type ReconcileContext, type ReconcileResult, TerminalError } from './controller.ts';
import { Informer, type ListWatchClient } from './informer.ts';
import { coreTypes } from './resource.ts';
import { ManualClock } from './manual-clock.ts';
import { ExponentialBackoff } from './work-queue.ts';

const log = pino({ level: 'silent' });

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await tick();
}

void describe('Controller', () => {
  void it('retries a failing key with backoff, and stops retrying after success', async () => {
    const clock = new ManualClock();
    const calls: number[] = [];
    let failuresLeft = 2;
    const outcomes: string[] = [];
    const controller = new Controller({
      name: 'test',
      clock,
      log,
      workers: 2,
      backoff: new ExponentialBackoff(1000, 10_000),
      observer: { onReconcile: (_c, outcome) => outcomes.push(outcome), onQueueDepth: () => undefined },
      reconciler: {
        reconcile: (): Promise<ReconcileResult> => {
          calls.push(clock.now());
          if (failuresLeft-- > 0) return Promise.reject(new Error('API server unavailable'));
          return Promise.resolve({});
        },
      },
    });
    const stop = new AbortController();
    const running = controller.run(stop.signal);
    controller.enqueue('ns/vm');
    await settle();
    clock.advance(1000);
    await settle();
    clock.advance(2000);
    await settle();
    clock.advance(60_000);
    await settle();
    assert.deepEqual(calls, [0, 1000, 3000]);
    assert.deepEqual(outcomes, ['error', 'error', 'success']);
    stop.abort();
    await running;
  });

  void it('does not retry a TerminalError, and honours requeueAfterMs', async () => {
    const clock = new ManualClock();
    const seen: string[] = [];
    const controller = new Controller({
      name: 'test',
      clock,
      log,
      reconciler: {
        reconcile: (_ctx: ReconcileContext, key: string): Promise<ReconcileResult> => {
          seen.push(`${key}@${clock.now()}`);
          if (key === 'ns/bad') return Promise.reject(new TerminalError('spec cannot be satisfied'));
          return Promise.resolve({ requeueAfterMs: 5000 });
        },
      },
    });
    const stop = new AbortController();
    const running = controller.run(stop.signal);
    controller.enqueue('ns/bad');
    controller.enqueue('ns/poll');
    await settle();
    clock.advance(5000);
    await settle();
    assert.deepEqual(seen.sort(), ['ns/bad@0', 'ns/poll@0', 'ns/poll@5000']);
    stop.abort();
    await running;
  });

  void it('runs different keys in parallel but one key on one worker at a time', async () => {
    const clock = new ManualClock();
    let active = 0;
    let maxActive = 0;
    const perKey = new Map<string, number>();
    let overlapSameKey = false;
    const releases: (() => void)[] = [];
    const controller = new Controller({
      name: 'test',
      clock,
      log,
      workers: 4,
      reconciler: {
        reconcile: async (_ctx: ReconcileContext, key: string): Promise<ReconcileResult> => {
          active++;
          maxActive = Math.max(maxActive, active);
          const n = (perKey.get(key) ?? 0) + 1;
          perKey.set(key, n);
          if (n > 1) overlapSameKey = true;
          await new Promise<void>((resolve) => releases.push(resolve));
          perKey.set(key, (perKey.get(key) ?? 1) - 1);
          active--;
          return {};
        },
      },
    });
    const stop = new AbortController();
    const running = controller.run(stop.signal);
    controller.enqueue('ns/a');
    controller.enqueue('ns/b');
    await settle();
    controller.enqueue('ns/a');
    controller.enqueue('ns/a');
    await settle();
    assert.equal(maxActive, 2);
    for (const r of releases.splice(0)) r();
    await settle();
    assert.equal(releases.length, 1, 'the merged re-add of ns/a ran once, after the first finished');
    for (const r of releases.splice(0)) r();
    await settle();
    assert.equal(overlapSameKey, false);
    stop.abort();
    await running;
  });

  void it('waits for a reconcile in flight on shutdown', async () => {
    const clock = new ManualClock();
    let finished = false;
    let release = (): void => undefined;
    const controller = new Controller({
      name: 'test',
      clock,
      log,
      reconciler: {
        reconcile: async (): Promise<ReconcileResult> => {
          await new Promise<void>((resolve) => (release = resolve));
          finished = true;
          return {};
        },
      },
    });
    const stop = new AbortController();
    const running = controller.run(stop.signal);
    controller.enqueue('ns/a');
    await settle();
    stop.abort();
    let stopped = false;
    void running.then(() => (stopped = true));
    await settle();
    assert.equal(stopped, false);
    release();
    await running;
    assert.equal(finished, true);
  });
});

void describe('Controller.watch', () => {
  const schema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }), spec: z.object({ strategy: z.string() }), status: z.object({ phase: z.string() }) });
  type Obj = z.infer<typeof schema>;
  const obj = (rv: string, strategy: string, phase: string): Obj => ({ metadata: { name: 'vm', namespace: 'ns', resourceVersion: rv }, spec: { strategy }, status: { phase } });

  /** An informer that lists one object (version 1, Scheduling) and then watches `updates` of it. */
  const informerOf = (updates: Obj[]): Informer<Obj> => {
    const client: ListWatchClient = {
      request: () => Promise.resolve({ metadata: { resourceVersion: '1' }, items: [obj('1', 'A', 'Scheduling')] }),
      watch: (_path, _query, handlers, signal) => {
        for (const o of updates) handlers.onEvent({ type: 'MODIFIED', object: o });
        return Promise.resolve({ done: new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })) });
      },
    };
    return new Informer({ client, type: coreTypes.pod, schema, log, sleep: () => Promise.resolve() });
  };

  void it('queues nothing for an update that changes nothing the controller reads', async () => {
    const informer = informerOf([obj('2', 'A', 'Starting'), obj('3', 'A', 'Running'), obj('4', 'B', 'Running')]);
    const queued: number[] = [];
    const controller = new Controller({
      name: 'test',
      clock: new ManualClock(),
      log,
      reconciler: { reconcile: () => Promise.resolve({}) },
      observer: { onReconcile: () => undefined, onQueueDepth: (_c, depth) => queued.push(depth) },
    });
    controller.watch(informer, (o) => [`${o.metadata.namespace}/${o.spec.strategy}`], { updateMatters: (old, o) => old.spec.strategy !== o.spec.strategy });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await settle();
    stop.abort();
    await running;
    // The add, then the strategy's change (both its keys); the two status updates queue nothing.
    assert.deepEqual(queued, [1, 2]);
  });

  void it('queues the keys updateKeys names for an update, in place of both versions\' keys', async () => {
    const informer = informerOf([obj('2', 'A', 'Running'), obj('3', 'B', 'Running')]);
    const controller = new Controller({ name: 'test', clock: new ManualClock(), log, reconciler: { reconcile: () => Promise.resolve({}) } });
    const updates: string[] = [];
    controller.watch(informer, (o) => [`all-of/${o.spec.strategy}`], {
      updateKeys: (old, o) => {
        updates.push(`${old.status.phase}->${o.status.phase}`);
        return old.status.phase === o.status.phase ? [] : [`phase/${o.status.phase}`];
      },
    });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await settle();
    stop.abort();
    await running;
    assert.deepEqual(updates, ['Scheduling->Running', 'Running->Running']);
    assert.equal(controller.queue.depth, 2, 'the add (all-of/A) and the phase change (phase/Running); the strategy change alone queues nothing');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { Informer, type ListWatchClient } from './informer.ts';
import { KubeApiError, KubeTransportError, type WatchStream } from './kube-client.ts';
import { coreTypes } from './resource.ts';

const log = pino({ level: 'silent' });
const podSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }),
  spec: z.object({ nodeName: z.string().optional() }),
});
type Pod = z.infer<typeof podSchema>;

function pod(name: string, rv: string, nodeName?: string): Pod {
  return { metadata: { name, namespace: 'ns', resourceVersion: rv }, spec: nodeName === undefined ? {} : { nodeName } };
}

type WatchScript = { events: unknown[]; end: 'close' | Error } | Error;

/** A list/watch client that plays back scripted lists and watch connections. */
class ScriptedClient implements ListWatchClient {
  lists: { items: unknown[]; rv: string }[] = [];
  watches: WatchScript[] = [];
  listCalls = 0;
  watchFrom: (string | undefined)[] = [];

  request(): Promise<unknown> {
    this.listCalls++;
    const next = this.lists.shift();
    if (next === undefined) return Promise.reject(new Error('no more lists scripted'));
    return Promise.resolve({ metadata: { resourceVersion: next.rv }, items: next.items });
  }

  watch(
    _path: string,
    query: Record<string, string | number | boolean | undefined>,
    handlers: { onEvent: (event: unknown) => void },
    signal: AbortSignal,
  ): Promise<WatchStream> {
    this.watchFrom.push(query.resourceVersion as string | undefined);
    const script = this.watches.shift();
    if (script === undefined) {
      // No more scripts: hang until aborted.
      return Promise.resolve({
        done: new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
      });
    }
    if (script instanceof Error) return Promise.reject(script);
    const done = (async (): Promise<void> => {
      await Promise.resolve();
      for (const e of script.events) {
        if (signal.aborted) return;
        try {
          handlers.onEvent(e);
        } catch (err) {
          throw new KubeTransportError('watch broke', { cause: err });
        }
      }
      if (script.end instanceof Error) throw script.end;
    })();
    return Promise.resolve({ done });
  }
}

function informer(client: ScriptedClient, sleeps: number[]): Informer<Pod> {
  return new Informer<Pod>({
    client,
    type: coreTypes.pod,
    schema: podSchema,
    log,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
  });
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'condition not reached');
}

void describe('Informer', () => {
  void it('lists, watches from the list version, applies events and ignores objects that fail the schema', async () => {
    const client = new ScriptedClient();
    client.lists.push({ items: [pod('a', '1'), { metadata: { name: 'broken' } }], rv: '10' });
    client.watches.push({
      events: [
        { type: 'ADDED', object: pod('b', '11') },
        { type: 'MODIFIED', object: pod('a', '12', 'node-1') },
        { type: 'MODIFIED', object: { metadata: { name: 'a', namespace: 'ns', resourceVersion: 13 } } },
        { type: 'DELETED', object: pod('b', '14') },
      ],
      end: 'close',
    });
    const inf = informer(client, []);
    const seen: string[] = [];
    inf.addHandlers({
      onAdd: (p) => seen.push(`add ${p.metadata.name}`),
      onUpdate: (o, p) => seen.push(`update ${p.metadata.name} ${o.metadata.resourceVersion}->${p.metadata.resourceVersion}`),
      onDelete: (p) => seen.push(`delete ${p.metadata.name}`),
    });
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watchFrom.length >= 2);
    stop.abort();
    await running;
    assert.deepEqual(seen, ['add a', 'add b', 'update a 1->12', 'delete b']);
    assert.deepEqual(client.watchFrom, ['10', '14'], 'the second watch resumes from the last event');
    assert.equal(inf.get('ns/a')?.spec.nodeName, 'node-1');
    assert.equal(inf.list().length, 1);
    assert.equal(inf.hasSynced(), true);
  });

  void it('relists on 410 Gone and reports objects deleted while it was away', async () => {
    const client = new ScriptedClient();
    client.lists.push({ items: [pod('a', '1'), pod('b', '2')], rv: '2' });
    client.watches.push({ events: [{ type: 'ERROR', object: { kind: 'Status', code: 410, message: 'too old' } }], end: 'close' });
    client.lists.push({ items: [pod('b', '7', 'node-2')], rv: '9' });
    const sleeps: number[] = [];
    const inf = informer(client, sleeps);
    const seen: string[] = [];
    inf.addHandlers({ onDelete: (p) => seen.push(`delete ${p.metadata.name}`), onUpdate: (_o, p) => seen.push(`update ${p.metadata.name}`) });
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watchFrom.length >= 2);
    stop.abort();
    await running;
    assert.equal(client.listCalls, 2);
    assert.deepEqual(client.watchFrom, ['2', '9']);
    assert.deepEqual(seen.sort(), ['delete a', 'update b']);
    assert.deepEqual(sleeps, [], 'a 410 relists at once, without backoff');
  });

  void it('wakes no handler for an update that changes only what the schema drops, yet caches its version', async () => {
    const client = new ScriptedClient();
    client.lists.push({ items: [pod('a', '1', 'node-1')], rv: '1' });
    client.watches.push({
      events: [
        // A heartbeat: a field the schema does not keep changed, and the version.
        { type: 'MODIFIED', object: { ...pod('a', '2', 'node-1'), status: { heartbeat: '12:00:01' } } },
        { type: 'MODIFIED', object: { ...pod('a', '3', 'node-1'), status: { heartbeat: '12:00:11' } } },
        { type: 'MODIFIED', object: pod('a', '4', 'node-2') },
      ],
      end: 'close',
    });
    const inf = informer(client, []);
    const seen: string[] = [];
    inf.addHandlers({ onUpdate: (o, p) => seen.push(`${o.metadata.resourceVersion}->${p.metadata.resourceVersion} ${p.spec.nodeName ?? ''}`) });
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watchFrom.length >= 2);
    assert.equal(inf.get('ns/a')?.metadata.resourceVersion, '4');
    stop.abort();
    await running;
    assert.deepEqual(seen, ['3->4 node-2'], 'only the change of nodeName is an update; the old object is the cached one of version 3');
  });

  void it('keeps retrying after errors with backoff doubling from 1 s to 30 s, and resets after a healthy watch', async () => {
    const client = new ScriptedClient();
    client.lists.push({ items: [], rv: '1' });
    for (let i = 0; i < 7; i++) client.watches.push(new KubeApiError(500, 'InternalError', 'etcd unavailable', { method: 'GET', path: '/x' }));
    client.watches.push({ events: [{ type: 'ADDED', object: pod('c', '5') }], end: 'close' });
    client.watches.push(new Error('connection refused'));
    const sleeps: number[] = [];
    const inf = informer(client, sleeps);
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watchFrom.length >= 10);
    stop.abort();
    await running;
    assert.deepEqual(sleeps, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 1000]);
    assert.ok(inf.get('ns/c'));
  });
});

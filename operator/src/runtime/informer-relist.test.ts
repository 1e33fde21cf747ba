// The informer's relist goes page by page into the cache (no second copy of the kind beside
// it), and handlers come and go on a running informer: a new one is handed what is cached,
// a removed one hears nothing more.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { Informer } from './informer.ts';
import { PagedListWatchFake } from './paged-list-watch-fake.ts';
import { coreTypes, keyOf } from './resource.ts';

const log = pino({ level: 'silent' });

/** An object whose content changes with its version (an update that changes only the version wakes no handler). */
function obj(name: string, rv: string): Record<string, unknown> {
  return { metadata: { name, namespace: 'ns', resourceVersion: rv }, spec: { rv } };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'condition not reached');
}

const gone = { type: 'ERROR', object: { kind: 'Status', code: 410, message: 'too old' } };

/** An informer whose schema records every object it parses (to find parsed objects held outside the cache). */
function recordingInformer(client: PagedListWatchFake, parsed: { metadata: { name: string; namespace: string; resourceVersion: string } }[]): Informer<{ metadata: { name: string; namespace: string; resourceVersion: string } }> {
  const schema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }), spec: z.object({ rv: z.string() }).optional() }).transform((o) => {
    parsed.push(o);
    return o;
  });
  return new Informer({ client, type: coreTypes.pod, schema, log, sleep: () => Promise.resolve(), pageSize: 2 });
}

void describe('Informer relist and handlers', () => {
  void it('relists page by page: no object of a relist is held beside the cache, and the events are those of the differences', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: ['a', 'b', 'c', 'd', 'e'].map((n) => obj(n, '1')), rv: '5' });
    client.watchEvents.push([gone]);
    // The relist: a unchanged, b and c changed, d and e gone, f new.
    client.lists.push({ items: [obj('a', '1'), obj('b', '8'), obj('c', '8'), obj('f', '8')], rv: '9' });
    const parsed: { metadata: { name: string; namespace: string; resourceVersion: string } }[] = [];
    const inf = recordingInformer(client, parsed);
    const heldBeside: number[] = [];
    client.beforePage = (): void => {
      if (client.listsCompleted === 0) return;
      // Parsed by the relist and alive, yet not what the cache holds: a second copy.
      heldBeside.push(parsed.filter((o) => o.metadata.resourceVersion !== '1' && inf.get(keyOf(o.metadata)) !== o).length);
    };
    const seen: string[] = [];
    inf.addHandlers({
      onAdd: (o) => seen.push(`add ${o.metadata.name}`),
      onUpdate: (_old, o) => seen.push(`update ${o.metadata.name}`),
      onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
    });
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watches >= 2);
    stop.abort();
    await running;
    assert.deepEqual(heldBeside, [0, 0], 'every page before the next is requested is in the cache already');
    assert.deepEqual(seen.slice(5), ['update b', 'update c', 'add f', 'delete d', 'delete e']);
    assert.deepEqual(inf.list().map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`).sort(), ['a@1', 'b@8', 'c@8', 'f@8']);
  });

  void it('a relist that fails half way deletes nothing; the next one completes it', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: ['a', 'b', 'c', 'd'].map((n) => obj(n, '1')), rv: '4' });
    client.watchEvents.push([gone]);
    client.lists.push({ items: [obj('a', '6'), obj('c', '6'), obj('e', '6')], rv: '6', failAtPage: 1 });
    client.lists.push({ items: [obj('a', '7'), obj('c', '7')], rv: '7' });
    const inf = recordingInformer(client, []);
    const deleted: string[] = [];
    let namesAfterFailure: string[] = [];
    client.beforePage = (page): void => {
      if (client.lists.length === 1 && page === 0) namesAfterFailure = inf.list().map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`).sort();
    };
    inf.addHandlers({ onDelete: (o) => deleted.push(o.metadata.name) });
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => client.watches >= 2);
    stop.abort();
    await running;
    assert.deepEqual(namesAfterFailure, ['a@6', 'b@1', 'c@6', 'd@1'], 'the failed list updated what it read and deleted nothing');
    assert.deepEqual(deleted.sort(), ['b', 'd']);
    assert.equal(inf.hasSynced(), true);
  });

  void it('hands a handler added to a filled cache every cached object, and a removed handler hears nothing more', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: [obj('a', '1'), obj('b', '1')], rv: '2' });
    const inf = recordingInformer(client, []);
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await until(() => inf.hasSynced());
    const first: string[] = [];
    const registration = inf.addHandlers({ onAdd: (o) => first.push(o.metadata.name) });
    assert.deepEqual(first.sort(), ['a', 'b']);
    assert.equal(inf.handlerCount, 1);
    inf.removeHandlers(registration);
    assert.equal(inf.handlerCount, 0);
    inf.removeHandlers(registration);
    stop.abort();
    await running;
  });
});

// The informer's scale features: paginated lists, the transform before the schema, and
// indexes kept in step with adds, updates, deletes and relists.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { Informer } from './informer.ts';
import { stripUnreadMetadata } from './object-trim.ts';
import { PagedListWatchFake } from './paged-list-watch-fake.ts';
import { coreTypes } from './resource.ts';

const log = pino({ level: 'silent' });
const schema = z.object({
  metadata: z.looseObject({ name: z.string(), namespace: z.string(), resourceVersion: z.string(), labels: z.record(z.string(), z.string()).optional() }),
});
type Obj = z.infer<typeof schema>;

function obj(name: string, rv: string, vm?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { metadata: { name, namespace: 'ns', resourceVersion: rv, ...(vm === undefined ? {} : { labels: { vm } }), ...extra } };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'condition not reached');
}

function informer(client: PagedListWatchFake, pageSize?: number): Informer<Obj> {
  return new Informer<Obj>({
    client,
    type: coreTypes.pod,
    schema,
    log,
    sleep: () => Promise.resolve(),
    transform: stripUnreadMetadata,
    ...(pageSize === undefined ? {} : { pageSize }),
  });
}

void describe('Informer at scale', () => {
  void it('lists in pages, following continue tokens, and watches from the list version', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: Array.from({ length: 7 }, (_, i) => obj(`o${i}`, String(i))), rv: '40' });
    const inf = informer(client, 3);
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await inf.waitForSync(stop.signal);
    stop.abort();
    await running;
    assert.deepEqual(
      client.queries.map((q) => [q.limit, q.continue]),
      [
        [3, undefined],
        [3, '3'],
        [3, '6'],
      ],
    );
    assert.equal(inf.size, 7);
  });

  void it('drops managedFields and the last-applied annotation before the schema sees the object', async () => {
    const client = new PagedListWatchFake();
    const big = obj('a', '1', undefined, {
      managedFields: [{ manager: 'kubectl', fieldsV1: { 'f:spec': {} } }],
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"spec":{}}', kept: 'yes' },
    });
    client.lists.push({ items: [big], rv: '1' });
    const inf = informer(client);
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await inf.waitForSync(stop.signal);
    stop.abort();
    await running;
    const cached = inf.get('ns/a');
    assert.ok(cached);
    assert.equal('managedFields' in cached.metadata, false);
    assert.deepEqual(cached.metadata.annotations, { kept: 'yes' });
  });

  void it('keeps an index in step with adds, relabels, deletes and relists', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: [obj('p1', '1', 'vm-a'), obj('p2', '2', 'vm-a'), obj('p3', '3', 'vm-b'), obj('p4', '4')], rv: '4' });
    client.watchEvents.push([
      { type: 'MODIFIED', object: obj('p2', '5', 'vm-b') },
      { type: 'DELETED', object: obj('p1', '6', 'vm-a') },
      { type: 'ADDED', object: obj('p5', '7', 'vm-c') },
      { type: 'ERROR', object: { kind: 'Status', code: 410 } },
    ]);
    client.lists.push({ items: [obj('p2', '5', 'vm-b'), obj('p5', '7', 'vm-c')], rv: '9' });
    const inf = informer(client, 2);
    inf.addIndex('vm', (o) => (o.metadata.labels?.vm === undefined ? [] : [o.metadata.labels.vm]));
    assert.throws(() => inf.addIndex('vm', () => []), /already has an index/);
    const names = (vm: string): string[] => inf.byIndex('vm', vm).map((o) => o.metadata.name).sort();
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await inf.waitForSync(stop.signal);
    await until(() => client.lists.length === 0 && inf.size === 2);
    stop.abort();
    await running;
    assert.deepEqual(names('vm-a'), []);
    assert.deepEqual(names('vm-b'), ['p2'], 'p3 vanished while the watch was away: the relist drops it from the index');
    assert.deepEqual(names('vm-c'), ['p5']);
    assert.deepEqual(['vm-a', 'vm-b', 'vm-c'].map((vm) => inf.countByIndex('vm', vm)), [0, 1, 1]);
    assert.throws(() => inf.byIndex('node', 'x'), /no index named node/);
    assert.throws(() => inf.countByIndex('node', 'x'), /no index named node/);
  });

  void it('builds an index added after the cache filled from what is cached', async () => {
    const client = new PagedListWatchFake();
    client.lists.push({ items: [obj('p1', '1', 'vm-a'), obj('p2', '2', 'vm-b')], rv: '2' });
    const inf = informer(client);
    const stop = new AbortController();
    const running = inf.run(stop.signal);
    await inf.waitForSync(stop.signal);
    inf.addIndex('vm', (o) => (o.metadata.labels?.vm === undefined ? [] : [o.metadata.labels.vm]));
    stop.abort();
    await running;
    assert.deepEqual(inf.byIndex('vm', 'vm-b').map((o) => o.metadata.name), ['p2']);
    assert.equal(inf.hasIndex('vm'), true);
  });
});

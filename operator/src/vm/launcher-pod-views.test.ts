import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { podSchema, type Pod } from '../runtime/core-schemas.ts';
import { Informer, type ListWatchClient } from '../runtime/informer.ts';
import { coreTypes } from '../runtime/resource.ts';
import { usageByNode } from '../scheduler/node-usage.ts';
import { launcherPodsOfVm, nodeUsageOf } from './launcher-pod-views.ts';

const log = pino({ level: 'silent' });

function pod(name: string, rv: string, vm: string, nodeName?: string, phase = 'Pending'): Pod {
  return podSchema.parse({
    metadata: { name, namespace: 'prod', resourceVersion: rv, labels: { 'keyvirt.io/vm': vm } },
    spec: { ...(nodeName === undefined ? {} : { nodeName }), containers: [{ name: 'launcher', resources: { requests: { cpu: '200m', memory: '400Mi' } } }] },
    status: { phase },
  });
}

/** Lists `listed`, then plays `events` on one watch that stays open until aborted. */
function client(listed: Pod[], events: { type: string; object: Pod }[]): ListWatchClient {
  return {
    request: () => Promise.resolve({ metadata: { resourceVersion: '1' }, items: listed }),
    watch: (_path, _query, handlers, signal) => {
      for (const e of events) handlers.onEvent(e);
      return Promise.resolve({ done: new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })) });
    },
  };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

const nodes = ['node-a', 'node-b'].map((name) => ({ metadata: { name }, status: { allocatable: { cpu: '8', memory: '16Gi' } } }));

void describe('launcher pod views', () => {
  void it('keep the node usage equal to summing the cached pods through the list, adds, updates and deletions', async () => {
    const events = [
      { type: 'ADDED', object: pod('launcher-c', '2', 'c', 'node-b') },
      { type: 'MODIFIED', object: pod('launcher-a', '3', 'a', 'node-a') },
      { type: 'MODIFIED', object: pod('launcher-b', '4', 'b', 'node-b', 'Failed') },
      { type: 'DELETED', object: pod('launcher-c', '5', 'c', 'node-b') },
      { type: 'ADDED', object: pod('launcher-d', '6', 'd', 'node-a') },
    ];
    const informer = new Informer({ client: client([pod('launcher-a', '1', 'a'), pod('launcher-b', '1', 'b', 'node-b')], events), type: coreTypes.pod, schema: podSchema, log, sleep: () => Promise.resolve() });
    // One view made before the cache fills, the same one asked for again after: both see every event.
    const early = nodeUsageOf(informer);
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await settle();
    assert.equal(nodeUsageOf(informer), early);
    const expected = usageByNode(nodes, informer.list());
    assert.deepEqual(early.usageByNode(nodes), expected);
    assert.equal(expected.get('node-a')?.podCount, 2);
    assert.equal(expected.get('node-b')?.podCount, 0);
    stop.abort();
    await running;
  });

  void it('find a VM\'s pods by the index, made once and shared', async () => {
    const informer = new Informer({ client: client([pod('launcher-a', '1', 'a'), pod('target-a', '1', 'a'), pod('launcher-b', '1', 'b')], []), type: coreTypes.pod, schema: podSchema, log, sleep: () => Promise.resolve() });
    const ofVm = launcherPodsOfVm(informer);
    const again = launcherPodsOfVm(informer);
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await settle();
    assert.deepEqual(ofVm({ metadata: { name: 'a', namespace: 'prod' } }).map((p) => p.metadata.name).sort(), ['launcher-a', 'target-a']);
    assert.deepEqual(again({ metadata: { name: 'b', namespace: 'prod' } }).map((p) => p.metadata.name), ['launcher-b']);
    assert.deepEqual(ofVm({ metadata: { name: 'a', namespace: 'other' } }), []);
    stop.abort();
    await running;
  });
});

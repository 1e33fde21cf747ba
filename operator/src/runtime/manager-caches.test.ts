// The manager's shared caches: one informer per kind, namespace and selector; a kind's
// cache restricted to a selector serves every controller that asks without one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { ManualClock } from './manual-clock.ts';
import { Manager } from './manager.ts';
import { coreTypes } from './resource.ts';

const schema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string().optional() }) });

function manager(): Manager {
  const reject = (): Promise<never> => Promise.reject(new Error('no API server in this test'));
  return new Manager({
    log: pino({ level: 'silent' }),
    client: { request: reject, watch: reject },
    clock: new ManualClock(),
    metrics: {
      contentType: 'text/plain',
      metrics: () => Promise.resolve(''),
      onList: () => undefined,
      onWatchConnected: () => undefined,
      onWatchError: () => undefined,
      onBadObject: () => undefined,
      onLeadershipChange: () => undefined,
    },
    health: { host: '127.0.0.1', port: 0 },
  });
}

void describe('Manager caches', () => {
  void it('shares one informer per kind and selector', () => {
    const m = manager();
    assert.equal(m.informer(coreTypes.pod, schema), m.informer(coreTypes.pod, schema));
    assert.notEqual(m.informer(coreTypes.pod, schema), m.informer(coreTypes.pod, schema, { labelSelector: 'a=b' }));
  });

  void it('gives every selector-less request of a restricted kind the restricted cache', () => {
    const m = manager();
    m.restrictCache(coreTypes.pod, { labelSelector: 'keyvirt.io/vm' });
    m.restrictCache(coreTypes.pod, { labelSelector: 'keyvirt.io/vm' });
    const restricted = m.informer(coreTypes.pod, schema);
    assert.equal(restricted, m.informer(coreTypes.pod, schema, { labelSelector: 'keyvirt.io/vm' }));
    assert.notEqual(restricted, m.informer(coreTypes.pod, schema, { labelSelector: 'app=job' }), 'an own selector keeps its own cache');
    assert.notEqual(m.informer(coreTypes.node, schema), restricted, 'other kinds are untouched');
    assert.throws(() => m.restrictCache(coreTypes.pod, { labelSelector: 'other' }), /already restricted/);
  });

  void it('refuses a restriction once an unrestricted cache of the kind is shared', () => {
    const m = manager();
    m.informer(coreTypes.pod, schema);
    assert.throws(() => m.restrictCache(coreTypes.pod, { labelSelector: 'keyvirt.io/vm' }), /unrestricted Pod informer exists/);
  });
});

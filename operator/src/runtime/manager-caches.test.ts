// The manager's shared caches: one informer per kind, namespace and selector; a kind's
// cache restricted to a selector serves every controller that asks without one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { offlineManager as manager } from './offline-manager.ts';
import { coreTypes } from './resource.ts';

const schema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string().optional() }) });

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

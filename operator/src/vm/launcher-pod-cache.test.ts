// The shared launcher pod cache: each controller that asks for it gets the one informer,
// restricted to launcher pods, whichever asks first.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { podSchema } from '../runtime/core-schemas.ts';
import { offlineManager as manager } from '../runtime/offline-manager.ts';
import { coreTypes } from '../runtime/resource.ts';
import { LAUNCHER_POD_CACHE_SELECTOR, launcherPodInformer } from './launcher-pod-cache.ts';

void describe('launcherPodInformer', () => {
  void it('selects pods labelled with a VM name', () => {
    assert.equal(LAUNCHER_POD_CACHE_SELECTOR, 'keyvirt.io/vm');
  });

  void it('gives every caller, and every later selector-less pod informer, the one restricted cache', () => {
    const m = manager();
    const first = launcherPodInformer(m);
    assert.equal(launcherPodInformer(m), first, 'a second controller shares it');
    assert.equal(m.informer(coreTypes.pod, podSchema), first, 'a controller asking for pods without a selector gets it');
    assert.equal(m.informer(coreTypes.pod, podSchema, { labelSelector: LAUNCHER_POD_CACHE_SELECTOR }), first);
  });

  void it('is refused once an unrestricted pod cache is shared (the wiring order is wrong)', () => {
    const m = manager();
    m.informer(coreTypes.pod, podSchema);
    assert.throws(() => launcherPodInformer(m), /unrestricted Pod informer exists/);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type EvictionStrategy } from '@keyvirt/crds';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { budgetAction, desiredBudget, LAUNCHER_MIN_AVAILABLE } from './budget-spec.ts';

function vm(evictionStrategy: EvictionStrategy, uid = 'vm-uid'): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid },
    spec: { runStrategy: 'Always', evictionStrategy, template: { memory: { size: '256Mi' } } },
  });
}

function budget(ownerUid: string, spec: PodDisruptionBudget['spec'] = { minAvailable: 2, selector: { matchLabels: { 'keyvirt.io/vm-uid': ownerUid } }, unhealthyPodEvictionPolicy: 'IfHealthyBudget' }, deleting = false): PodDisruptionBudget {
  return {
    metadata: {
      name: 'launcher-web-1',
      namespace: 'prod',
      uid: 'pdb-uid',
      resourceVersion: '7',
      ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid: ownerUid, controller: true }],
    },
    spec,
  };
}

void describe('desiredBudget', () => {
  void it('selects the launcher pods of this VM (by uid) and keeps two available: source and migration target', () => {
    const b = desiredBudget(vm('LiveMigrate'));
    assert.ok(b);
    assert.equal(b.metadata.name, 'launcher-web-1');
    assert.equal(b.metadata.namespace, 'prod');
    assert.deepEqual(b.spec?.selector?.matchLabels, { 'keyvirt.io/vm-uid': 'vm-uid' });
    assert.equal(b.spec?.minAvailable, LAUNCHER_MIN_AVAILABLE);
    assert.equal(LAUNCHER_MIN_AVAILABLE, 2);
    assert.equal(b.spec?.maxUnavailable, undefined, 'maxUnavailable needs a scale subresource on the owner');
    assert.equal(b.metadata.ownerReferences?.[0]?.uid, 'vm-uid');
    assert.equal(b.metadata.ownerReferences?.[0]?.controller, true);
  });

  void it('gives a Shutdown VM no budget: drain evicts it and the guest shuts down', () => {
    assert.equal(desiredBudget(vm('Shutdown')), undefined);
  });
});

void describe('budgetAction', () => {
  const drifted = { maxUnavailable: 1, selector: { matchLabels: { 'keyvirt.io/vm-uid': 'vm-uid' } } };
  const table: [string, VirtualMachine | undefined, PodDisruptionBudget | undefined, string][] = [
    ['LiveMigrate VM without a budget', vm('LiveMigrate'), undefined, 'create'],
    ['LiveMigrate VM with its budget', vm('LiveMigrate'), budget('vm-uid'), 'none'],
    ['LiveMigrate VM with an edited budget', vm('LiveMigrate'), budget('vm-uid', drifted), 'update'],
    ['Shutdown VM with its old budget', vm('Shutdown'), budget('vm-uid'), 'delete'],
    ['Shutdown VM whose budget is going', vm('Shutdown'), budget('vm-uid', undefined, true), 'none'],
    ['Shutdown VM without a budget', vm('Shutdown'), undefined, 'none'],
    ['VM gone, budget left to the garbage collector', undefined, budget('vm-uid'), 'foreign'],
    ['recreated VM meets the budget of its predecessor', vm('LiveMigrate', 'new-uid'), budget('vm-uid'), 'foreign'],
    ['nothing at all', undefined, undefined, 'none'],
  ];
  for (const [what, v, b, want] of table) {
    void it(`${what} → ${want}`, () => {
      assert.equal(budgetAction(v, b).kind, want);
    });
  }

  void it('an update removes maxUnavailable (exclusive with minAvailable) and keeps the resourceVersion', () => {
    const action = budgetAction(vm('LiveMigrate'), budget('vm-uid', drifted));
    assert.equal(action.kind, 'update');
    if (action.kind !== 'update') return;
    assert.equal(action.spec.minAvailable, 2);
    assert.match(JSON.stringify(action.spec), /"maxUnavailable":null/, 'the merge patch removes maxUnavailable');
    assert.equal(action.resourceVersion, '7');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type EvictionStrategy } from '@keyvirt/crds';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { budgetAction, desiredBudget, LAUNCHER_MIN_AVAILABLE, namespaceNeedsBudget, removableVmBudgets } from './budget-spec.ts';

function vm(evictionStrategy: EvictionStrategy): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
    spec: { runStrategy: 'Always', evictionStrategy, template: { memory: { size: '256Mi' } } },
  });
}

function budget(spec: PodDisruptionBudget['spec'] = desiredBudget('prod').spec, deleting = false): PodDisruptionBudget {
  return {
    metadata: { name: 'keyvirt-launchers', namespace: 'prod', uid: 'pdb-uid', resourceVersion: '7', ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec,
  };
}

void describe('desiredBudget', () => {
  void it('selects the LiveMigrate launcher pods of the namespace and never allows a disruption', () => {
    const b = desiredBudget('prod');
    assert.equal(b.metadata.name, 'keyvirt-launchers');
    assert.equal(b.metadata.namespace, 'prod');
    assert.deepEqual(b.spec?.selector?.matchLabels, {
      'app.kubernetes.io/component': 'launcher',
      'app.kubernetes.io/managed-by': 'keyvirt-operator',
      'keyvirt.io/eviction-strategy': 'LiveMigrate',
    });
    assert.equal(b.spec?.minAvailable, LAUNCHER_MIN_AVAILABLE);
    assert.equal(LAUNCHER_MIN_AVAILABLE, 2 ** 31 - 1, 'the largest int32: more than any count of pods');
    assert.equal(b.spec?.maxUnavailable, undefined, 'maxUnavailable needs a scale subresource on the owner');
    assert.equal(b.spec?.unhealthyPodEvictionPolicy, 'IfHealthyBudget', 'a budget never healthy: a not-ready running launcher is not evicted either');
  });

  void it('a namespace needs it while one of its VMs is LiveMigrate', () => {
    assert.equal(namespaceNeedsBudget([vm('Shutdown'), vm('LiveMigrate')]), true);
    assert.equal(namespaceNeedsBudget([vm('Shutdown')]), false);
    assert.equal(namespaceNeedsBudget([]), false);
  });
});

/** The spec with its selector's labels in reverse key order (as another client or the API server may write them). */
function reordered(spec: PodDisruptionBudget['spec']): PodDisruptionBudget['spec'] {
  const labels = Object.entries(spec?.selector?.matchLabels ?? {}).reverse();
  assert.ok(labels.length > 1, 'more than one label to reorder');
  return { ...spec, selector: { matchLabels: Object.fromEntries(labels) } };
}

/** The spec with one selector label set to `value` (removed when undefined). */
function relabelled(spec: PodDisruptionBudget['spec'], key: string, value: string | undefined): PodDisruptionBudget['spec'] {
  const labels = Object.entries({ ...spec?.selector?.matchLabels, [key]: value }).filter((e): e is [string, string] => e[1] !== undefined);
  return { ...spec, selector: { matchLabels: Object.fromEntries(labels) } };
}

void describe('budgetAction', () => {
  const drifted = { maxUnavailable: 1, selector: { matchLabels: { 'keyvirt.io/eviction-strategy': 'LiveMigrate' } } };
  const table: [string, boolean, PodDisruptionBudget | undefined, string][] = [
    ['needed, absent', true, undefined, 'create'],
    ['needed, present', true, budget(), 'none'],
    ['needed, edited', true, budget(drifted), 'update'],
    ['needed, going away', true, budget(undefined, true), 'none'],
    ['not needed (here), present', false, budget(), 'none'],
    ['not needed, going away', false, budget(undefined, true), 'none'],
    ['not needed, absent', false, undefined, 'none'],
    ['needed, its selector\'s labels in another key order', true, budget(reordered(desiredBudget('prod').spec)), 'none'],
    ['needed, a selector label changed', true, budget(relabelled(desiredBudget('prod').spec, 'keyvirt.io/eviction-strategy', 'None')), 'update'],
    ['needed, a selector label missing', true, budget(relabelled(desiredBudget('prod').spec, 'app.kubernetes.io/component', undefined)), 'update'],
    ['needed, a selector label more', true, budget(relabelled(desiredBudget('prod').spec, 'keyvirt.io/vm', 'web-1')), 'update'],
  ];
  for (const [what, needed, b, want] of table) {
    void it(`${what} → ${want}`, () => {
      assert.equal(budgetAction('prod', needed, b).kind, want);
    });
  }

  void it('an update removes maxUnavailable (exclusive with minAvailable), replaces the selector and keeps the resourceVersion', () => {
    const action = budgetAction('prod', true, budget(drifted));
    assert.equal(action.kind, 'update');
    if (action.kind !== 'update') return;
    assert.equal(action.spec.minAvailable, LAUNCHER_MIN_AVAILABLE);
    assert.match(JSON.stringify(action.spec), /"maxUnavailable":null/, 'the merge patch removes maxUnavailable');
    assert.match(JSON.stringify(action.spec), /"matchExpressions":null/);
    assert.equal(action.resourceVersion, '7');
  });
});

void describe('removableVmBudgets', () => {
  const perVm: PodDisruptionBudget = { metadata: { name: 'launcher-web-1', namespace: 'prod', uid: 'old' }, spec: { minAvailable: 2, selector: { matchLabels: { 'keyvirt.io/vm-uid': 'vm-uid' } } } };
  const pod = (labels: Record<string, string>, phase = 'Running'): { metadata: { labels: Record<string, string> }; status: { phase: string } } => ({ metadata: { labels: { 'keyvirt.io/vm-uid': 'vm-uid', ...labels } }, status: { phase } });
  const table: [string, PodDisruptionBudget | undefined, ReturnType<typeof pod>[], number][] = [
    ['no namespace budget yet', undefined, [], 0],
    ['namespace budget going away', budget(undefined, true), [], 0],
    ['its VM has no pod', budget(), [], 1],
    ['its pod labelled', budget(), [pod({ 'keyvirt.io/eviction-strategy': 'LiveMigrate' })], 1],
    ['its pod not labelled yet', budget(), [pod({})], 0],
    ['its unlabelled pod finished', budget(), [pod({}, 'Succeeded')], 1],
  ];
  void it('a per-VM budget of a VM this operator does not manage stays', () => {
    assert.equal(removableVmBudgets([perVm], new Set(['another-uid']), budget(), []).length, 0);
  });
  for (const [what, ns, pods, want] of table) {
    void it(`${what} → ${String(want)} removable`, () => {
      assert.equal(removableVmBudgets([perVm], new Set(['vm-uid']), ns, pods).length, want);
    });
  }
});

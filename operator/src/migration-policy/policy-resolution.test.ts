import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MigrationPolicy, VirtualMachine, type MigrationPolicyInput } from '@keyvirt/crds';
import { labelSelectorMatches } from './label-selector.ts';
import { resolveMigrationPolicy, selectMigrationPolicy } from './policy-resolution.ts';

function vm(labels: Record<string, string>): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', labels },
    spec: { runStrategy: 'Always', template: { memory: { size: '1Gi' }, disks: [] } },
  });
}

function policy(name: string, spec: MigrationPolicyInput['spec'] = {}): MigrationPolicy {
  return MigrationPolicy.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'MigrationPolicy', metadata: { name }, spec });
}

void describe('labelSelectorMatches', () => {
  const labels = { app: 'web', tier: 'front' };
  const cases: [string, Parameters<typeof labelSelectorMatches>[0], boolean][] = [
    ['absent selector', undefined, true],
    ['empty selector', {}, true],
    ['matchLabels all equal', { matchLabels: { app: 'web', tier: 'front' } }, true],
    ['matchLabels one differs', { matchLabels: { app: 'web', tier: 'back' } }, false],
    ['matchLabels key missing', { matchLabels: { zone: 'a' } }, false],
    ['In holds', { matchExpressions: [{ key: 'app', operator: 'In', values: ['db', 'web'] }] }, true],
    ['In fails', { matchExpressions: [{ key: 'app', operator: 'In', values: ['db'] }] }, false],
    ['In on a missing key', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }, false],
    ['NotIn holds', { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }] }, true],
    ['NotIn on a missing key holds', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    ['NotIn fails', { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web'] }] }, false],
    ['Exists holds', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, true],
    ['Exists fails', { matchExpressions: [{ key: 'zone', operator: 'Exists' }] }, false],
    ['DoesNotExist holds', { matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, true],
    ['DoesNotExist fails', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    ['inherited property is no label', { matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }, false],
    [
      'labels and expressions ANDed',
      { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }] },
      false,
    ],
  ];
  for (const [name, selector, expected] of cases) {
    void it(name, () => assert.equal(labelSelectorMatches(selector, labels), expected));
  }
});

void describe('selectMigrationPolicy', () => {
  const web = vm({ app: 'web', tier: 'front' });
  const ns = { team: 'a', env: 'prod' };
  const cases: [string, MigrationPolicy[], string | undefined][] = [
    ['no policies', [], undefined],
    ['a policy without selectors selects every VM', [policy('all')], 'all'],
    ['VM selector must match', [policy('db', { selectors: { virtualMachineSelector: { matchLabels: { app: 'db' } } } })], undefined],
    ['namespace selector must match', [policy('b', { selectors: { namespaceSelector: { matchLabels: { team: 'b' } } } })], undefined],
    [
      'both selectors must match',
      [policy('mixed', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { team: 'b' } } } })],
      undefined,
    ],
    [
      'more matching requirements win',
      [
        policy('a-one', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } }),
        policy('z-two', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { env: 'prod' } } } }),
      ],
      'z-two',
    ],
    [
      'match expressions count as requirements',
      [
        policy('a-labels', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } }),
        policy('z-exprs', { selectors: { virtualMachineSelector: { matchExpressions: [{ key: 'app', operator: 'Exists' }, { key: 'tier', operator: 'In', values: ['front'] }] } } }),
      ],
      'z-exprs',
    ],
    [
      'equal totals: more on the VM selector wins',
      [
        policy('a-ns', { selectors: { namespaceSelector: { matchLabels: { team: 'a', env: 'prod' } } } }),
        policy('z-vm', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { team: 'a' } } } }),
      ],
      'z-vm',
    ],
    [
      'full tie: the name first in code-point order wins, whatever the list order',
      [
        policy('beta', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } }),
        policy('alpha', { selectors: { virtualMachineSelector: { matchLabels: { tier: 'front' } } } }),
      ],
      'alpha',
    ],
    [
      'a non-matching more specific policy does not count',
      [policy('catch-all'), policy('specific', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web', tier: 'back' } } } })],
      'catch-all',
    ],
    [
      'a policy being deleted is skipped',
      [policy('all'), MigrationPolicy.parse({ ...policy('aaa', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } }), metadata: { name: 'aaa', deletionTimestamp: '2026-01-01T00:00:00Z' } })],
      'all',
    ],
  ];
  for (const [name, policies, expected] of cases) {
    void it(name, () => {
      assert.equal(selectMigrationPolicy(web, ns, policies)?.metadata.name, expected);
      assert.equal(selectMigrationPolicy(web, ns, [...policies].reverse())?.metadata.name, expected, 'independent of list order');
    });
  }
});

void describe('resolveMigrationPolicy', () => {
  const web = vm({ app: 'web' });

  void it('without policy or overrides: the cluster defaults', () => {
    const r = resolveMigrationPolicy({ vm: web, namespaceLabels: {}, policies: [] });
    assert.equal(r.policyName, undefined);
    assert.deepEqual(r.limits, { parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 2 });
    assert.deepEqual(r.policy, {
      bandwidthBytesPerSecond: 0,
      downtimeScheduleMs: [100, 150, 200, 300, 400, 500],
      stalledIterationsPerStep: 2,
      autoConverge: false,
      postCopy: false,
      completionTimeoutPerGiBSeconds: 150,
      progressTimeoutSeconds: 150,
    });
  });

  void it('the selecting policy replaces the defaults it sets and keeps the others', () => {
    const p = policy('fast', {
      selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } },
      bandwidthPerMigration: '64Mi',
      allowAutoConverge: true,
      downtime: { stepsMs: [50, 300] },
      parallelMigrationsPerCluster: 3,
      parallelOutboundMigrationsPerNode: 1,
    });
    const r = resolveMigrationPolicy({ vm: web, namespaceLabels: {}, policies: [p] });
    assert.equal(r.policyName, 'fast');
    assert.deepEqual(r.limits, { parallelMigrationsPerCluster: 3, parallelOutboundMigrationsPerNode: 1 });
    assert.equal(r.policy.bandwidthBytesPerSecond, 64 * 1024 * 1024);
    assert.equal(r.policy.autoConverge, true);
    assert.deepEqual(r.policy.downtimeScheduleMs, [50, 300]);
    assert.equal(r.policy.stalledIterationsPerStep, 2);
    assert.equal(r.policy.postCopy, false);
    assert.equal(r.policy.completionTimeoutPerGiBSeconds, 150);
  });

  void it('the migration overrides win field by field over the policy', () => {
    const p = policy('slow', { bandwidthPerMigration: '1Mi', allowPostCopy: true, progressTimeoutSeconds: 30, parallelOutboundMigrationsPerNode: 1 });
    const r = resolveMigrationPolicy({
      vm: web,
      namespaceLabels: {},
      policies: [p],
      overrides: { bandwidthPerMigration: '0', downtime: { stepsMs: [200], stallIterations: 5 } },
    });
    assert.equal(r.policyName, 'slow');
    assert.equal(r.policy.bandwidthBytesPerSecond, 0);
    assert.equal(r.policy.postCopy, true);
    assert.equal(r.policy.progressTimeoutSeconds, 30);
    assert.deepEqual(r.policy.downtimeScheduleMs, [200]);
    assert.equal(r.policy.stalledIterationsPerStep, 5);
    assert.deepEqual(r.limits, { parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 1 }, 'limits come from the policy, never from overrides');
  });

  void it('overrides without a policy apply over the defaults', () => {
    const r = resolveMigrationPolicy({ vm: web, namespaceLabels: {}, policies: [], overrides: { allowAutoConverge: true } });
    assert.equal(r.policyName, undefined);
    assert.equal(r.policy.autoConverge, true);
    assert.deepEqual(r.policy.downtimeScheduleMs, [100, 150, 200, 300, 400, 500]);
  });

  void it('namespace labels take part in the choice', () => {
    const p = policy('team-a', { selectors: { namespaceSelector: { matchLabels: { team: 'a' } } }, allowPostCopy: true });
    assert.equal(resolveMigrationPolicy({ vm: web, namespaceLabels: { team: 'a' }, policies: [p] }).policy.postCopy, true);
    assert.equal(resolveMigrationPolicy({ vm: web, namespaceLabels: { team: 'b' }, policies: [p] }).policy.postCopy, false);
  });
});

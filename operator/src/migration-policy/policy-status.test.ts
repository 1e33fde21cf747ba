import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MigrationPolicy, VirtualMachine, type MigrationPolicyInput } from '@keyvirt/crds';
import { migrationPolicyStatus } from './policy-status.ts';

function vm(namespace: string, name: string, labels: Record<string, string>): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace, labels },
    spec: { runStrategy: 'Always', template: { memory: { size: '1Gi' } } },
  });
}

function policy(name: string, spec: MigrationPolicyInput['spec'] = {}, generation = 3): MigrationPolicy {
  return MigrationPolicy.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'MigrationPolicy', metadata: { name, generation }, spec });
}

const namespaces: Record<string, Record<string, string>> = { prod: { env: 'prod' }, dev: { env: 'dev' } };
const vms = [vm('prod', 'web-1', { app: 'web' }), vm('prod', 'db-1', { app: 'db' }), vm('dev', 'web-2', { app: 'web' }), vm('other', 'x', {})];
const web = policy('web', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } });
const prodWeb = policy('prod-web', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { env: 'prod' } } } });
const all = policy('all');
const none = policy('none', { selectors: { virtualMachineSelector: { matchLabels: { app: 'nothing' } } } });

function status(p: MigrationPolicy, policies: MigrationPolicy[], previous?: Parameters<typeof migrationPolicyStatus>[0]['previous']): ReturnType<typeof migrationPolicyStatus> {
  return migrationPolicyStatus({ policy: p, vms, namespaceLabels: (ns) => namespaces[ns] ?? {}, policies, previous, now: '2026-01-01T00:00:00Z' });
}

void describe('migrationPolicyStatus', () => {
  const cases: [string, MigrationPolicy, MigrationPolicy[], number, string, string][] = [
    ['a policy without selectors alone applies to every VM', all, [all], 4, 'Applied', 'applies to 4 VMs'],
    ['a VM selector', web, [web], 2, 'Applied', 'applies to 2 VMs'],
    ['VM and namespace selectors', prodWeb, [prodWeb], 1, 'Applied', 'applies to 1 VM'],
    [
      'a more specific policy takes the VMs it matches',
      web,
      [web, prodWeb],
      1,
      'Applied',
      'applies to 1 VM; 1 VM it selects follow MigrationPolicy prod-web, which matches more labels or comes first by name',
    ],
    ['the more specific one counts its own', prodWeb, [web, prodWeb, all], 1, 'Applied', 'applies to 1 VM'],
    [
      'a catch-all keeps only the VMs no other policy selects',
      all,
      [all, web, prodWeb],
      2,
      'Applied',
      'applies to 2 VMs; 1 VM it selects follow MigrationPolicy prod-web, which matches more labels or comes first by name; 1 VM it selects follow MigrationPolicy web, which matches more labels or comes first by name',
    ],
    ['nothing selected', none, [none, all], 0, 'NoVirtualMachines', 'applies to no VM'],
  ];
  for (const [name, p, policies, count, reason, message] of cases) {
    void it(name, () => {
      const s = status(p, policies);
      assert.equal(s.matchedVirtualMachines, count);
      assert.equal(s.observedGeneration, 3);
      assert.deepEqual(s.conditions, [{ type: 'Ready', status: 'True', reason, message, lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 3 }]);
    });
  }

  void it('overridden everywhere', () => {
    const twin = policy('a-web', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } });
    const s = status(web, [web, twin]);
    assert.equal(s.matchedVirtualMachines, 0);
    assert.equal(s.conditions?.[0]?.reason, 'Overridden');
  });

  void it('keeps the transition time while the condition status holds', () => {
    const first = status(web, [web]);
    const later = migrationPolicyStatus({ policy: web, vms: vms.slice(0, 1), namespaceLabels: (ns) => namespaces[ns] ?? {}, policies: [web], previous: first, now: '2026-01-01T01:00:00Z' });
    assert.equal(later.matchedVirtualMachines, 1);
    assert.equal(later.conditions?.[0]?.lastTransitionTime, '2026-01-01T00:00:00Z');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import type { Pod } from '../runtime/core-schemas.ts';
import { selectLauncher } from './launcher-selection.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: { template: { memory: { size: '256Mi' } } },
});

interface PodSpec {
  name: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  created: string;
  target?: boolean;
  owner?: string;
}

function pod(p: PodSpec): Pod {
  return {
    metadata: {
      name: p.name,
      namespace: 'prod',
      uid: `${p.name}-uid`,
      creationTimestamp: `2026-01-01T00:00:${p.created}Z`,
      labels: { 'keyvirt.io/vm': 'web-1', ...(p.target === true ? { 'keyvirt.io/migration-target': 'mig-uid' } : {}) },
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid: p.owner ?? 'vm-uid', controller: true }],
    },
    spec: { containers: [{ name: 'launcher' }] },
    status: { phase: p.phase },
  };
}

const cases: { name: string; pods: PodSpec[]; launcher: string | undefined; handOver: boolean; leftovers: string[]; foreign?: boolean }[] = [
  { name: 'no pods', pods: [], launcher: undefined, handOver: false, leftovers: [] },
  { name: 'one running launcher', pods: [{ name: 'a', phase: 'Running', created: '01' }], launcher: 'a', handOver: false, leftovers: [] },
  {
    name: 'a migration target is never the launcher while labelled',
    pods: [{ name: 'a', phase: 'Running', created: '01' }, { name: 't', phase: 'Running', created: '05', target: true }],
    launcher: 'a',
    handOver: true,
    leftovers: [],
  },
  {
    name: 'source finished before the promotion: hand-over, nothing restarts',
    pods: [{ name: 'a', phase: 'Succeeded', created: '01' }, { name: 't', phase: 'Running', created: '05', target: true }],
    launcher: 'a',
    handOver: true,
    leftovers: [],
  },
  {
    name: 'promoted target while the source still quits: the newest active pod, hand-over',
    pods: [{ name: 'a', phase: 'Running', created: '01' }, { name: 't', phase: 'Running', created: '05' }],
    launcher: 't',
    handOver: true,
    leftovers: [],
  },
  {
    name: 'promoted target, source finished: the target, the source is a leftover',
    pods: [{ name: 'a', phase: 'Succeeded', created: '01' }, { name: 't', phase: 'Running', created: '05' }],
    launcher: 't',
    handOver: false,
    leftovers: ['a'],
  },
  {
    name: 'failed migration: the target finished, the source runs on',
    pods: [{ name: 'a', phase: 'Running', created: '01' }, { name: 't', phase: 'Succeeded', created: '05', target: true }],
    launcher: 'a',
    handOver: false,
    leftovers: [],
  },
  {
    name: 'the promoted target died later: it is the finished launcher, the older source a leftover',
    pods: [{ name: 'a', phase: 'Succeeded', created: '01' }, { name: 't', phase: 'Failed', created: '05' }],
    launcher: 't',
    handOver: false,
    leftovers: ['a'],
  },
  {
    name: 'a pod of an earlier VM with the same name',
    pods: [{ name: 'launcher-web-1', phase: 'Running', created: '01', owner: 'old-uid' }],
    launcher: undefined,
    handOver: false,
    leftovers: [],
    foreign: true,
  },
];

void describe('selectLauncher', () => {
  for (const c of cases) {
    void it(c.name, () => {
      const s = selectLauncher(vm, c.pods.map(pod));
      assert.equal(s.pod?.metadata.name, c.launcher);
      assert.equal(s.handOver, c.handOver);
      assert.deepEqual(s.leftovers.map((p) => p.metadata.name), c.leftovers);
      assert.equal(s.foreign, c.foreign ?? false);
    });
  }
});

void describe('selectLauncher: orphaned migration targets', () => {
  const now = Date.parse('2026-01-01T00:05:00Z');
  const pods = [pod({ name: 'a', phase: 'Running', created: '01' }), pod({ name: 't', phase: 'Running', created: '05', target: true })];
  void it('a target whose migration is gone, older than the informer lag, is an orphan', () => {
    assert.deepEqual(selectLauncher(vm, pods, new Set(), now).orphanTargets.map((p) => p.metadata.name), ['t']);
  });
  void it('a target whose migration exists is not', () => {
    assert.deepEqual(selectLauncher(vm, pods, new Set(['mig-uid']), now).orphanTargets, []);
  });
  void it('a young target is not: its migration may not have reached the cache yet', () => {
    assert.deepEqual(selectLauncher(vm, pods, new Set(), Date.parse('2026-01-01T00:00:30Z')).orphanTargets, []);
  });
});

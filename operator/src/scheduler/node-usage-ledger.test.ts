import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeShape, PodShape } from './kube-shapes.ts';
import { NodeUsageLedger } from './node-usage-ledger.ts';
import { usageByNode, type NodeUsage } from './node-usage.ts';

const nodes: NodeShape[] = [
  { metadata: { name: 'a', labels: { 'kubernetes.io/hostname': 'host-a' } }, status: { allocatable: { cpu: '4', memory: '8Gi', pods: '110' } } },
  { metadata: { name: 'b' }, status: { allocatable: { cpu: '2', memory: '4Gi' } } },
  { metadata: { name: 'c', labels: { 'kubernetes.io/hostname': 'c' } }, status: { capacity: { cpu: '1', memory: '1Gi' } } },
];

function byHostname(hostname: string): NonNullable<PodShape['spec']> {
  return {
    containers: [{ name: 'l', resources: { requests: { cpu: '250m', memory: '256Mi' } } }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [hostname] }] }] } } },
  };
}

const pods: Record<string, PodShape> = {
  bound: { spec: { nodeName: 'a', containers: [{ name: 'l', resources: { requests: { cpu: '1', memory: '1Gi' } } }] } },
  pinnedByHostname: { spec: byHostname('host-a') },
  pinnedToUnknownHostname: { spec: byHostname('b') },
  pinnedByName: {
    spec: {
      containers: [{ name: 'l', resources: { requests: { cpu: '100m', memory: '100Mi' }, limits: { 'devices.keyvirt.io/kvm': '1' } } }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['c'] }] }] } } },
    },
  },
  boundWithOverhead: { spec: { nodeName: 'b', overhead: { memory: '10Mi' }, containers: [{ name: 'l', resources: { requests: { cpu: '500m' } } }] } },
  finished: { spec: { nodeName: 'a', containers: [{ name: 'l', resources: { requests: { cpu: '3' } } }] }, status: { phase: 'Succeeded' } },
  nowhere: { spec: { containers: [{ name: 'l', resources: { requests: { cpu: '3' } } }] } },
};

function plain(usage: Map<string, NodeUsage>): Record<string, { requested: Record<string, number>; podCount: number; allocatable: Record<string, number> }> {
  return Object.fromEntries(
    [...usage].map(([name, u]) => [name, { requested: Object.fromEntries([...u.requested].filter(([, v]) => v !== 0).sort()), podCount: u.podCount, allocatable: Object.fromEntries([...u.allocatable].sort()) }]),
  );
}

type Step = [key: string, pod: PodShape | undefined];

void describe('NodeUsageLedger', () => {
  const cases: { name: string; steps: Step[] }[] = [
    { name: 'nothing', steps: [] },
    { name: 'every kind of pod added', steps: Object.entries(pods) },
    { name: 'a pending pod bound to another node than its pin', steps: [['p', pods.pinnedByHostname], ['p', { ...pods.pinnedByHostname, spec: { ...byHostname('host-a'), nodeName: 'b' } }]] },
    { name: 'a pod that finishes', steps: [['p', pods.bound], ['q', pods.pinnedByName], ['p', { ...pods.bound, status: { phase: 'Failed' } }]] },
    { name: 'pods deleted, one twice', steps: [...Object.entries(pods), ['bound', undefined], ['pinnedByName', undefined], ['pinnedByName', undefined]] },
    { name: 'a deleted pod never seen', steps: [['ghost', undefined], ['p', pods.bound]] },
    { name: 'the last pod of a node goes', steps: [['p', pods.boundWithOverhead], ['p', undefined]] },
    { name: 'a finished pod restarted under the same key', steps: [['p', pods.finished], ['p', pods.bound]] },
  ];
  for (const c of cases) {
    void it(`${c.name}: the same usage as summing the pods`, () => {
      const ledger = new NodeUsageLedger();
      const live = new Map<string, PodShape>();
      for (const [key, pod] of c.steps) {
        ledger.set(key, pod);
        if (pod === undefined) live.delete(key);
        else live.set(key, pod);
      }
      assert.deepEqual(plain(ledger.usageByNode(nodes)), plain(usageByNode(nodes, [...live.values()])));
    });
  }

  void it('counts only pods that occupy a node', () => {
    const ledger = new NodeUsageLedger();
    for (const [key, pod] of Object.entries(pods)) ledger.set(key, pod);
    assert.equal(ledger.size, 5);
  });

  void it('reads no pod to answer: a placement costs the same with 10 pods as with 5,000', () => {
    let reads = 0;
    const counted = (pod: PodShape): PodShape => ({
      get spec() {
        reads += 1;
        return pod.spec;
      },
      status: pod.status,
    });
    const ledger = new NodeUsageLedger();
    for (let i = 0; i < 5000; i++) ledger.set(`ns/p-${i}`, counted(i % 2 === 0 ? pods.bound ?? {} : pods.pinnedByHostname ?? {}));
    const afterSets = reads;
    const usage = ledger.usageByNode(nodes);
    for (let i = 0; i < 99; i++) ledger.usageByNode(nodes);
    assert.equal(reads, afterSets);
    assert.equal(usage.get('a')?.podCount, 5000);
    assert.equal(usage.get('a')?.requested.get('cpu'), 2500 * 1000 + 2500 * 250);
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import type { Node } from '../runtime/core-schemas.ts';
import { policyPlacementDecider } from './policy-placement-decider.ts';
import { podListUsage } from './node-usage-ledger.ts';

function vm(extra: Record<string, unknown> = {}, template: Record<string, unknown> = {}): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid: 'u1' },
    spec: { runStrategy: 'Always', template: { memory: { size: '1Gi' }, ...template }, ...extra },
  });
}

function node(name: string, labels: Record<string, string> = {}): Node {
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'keyvirt.io/kvm': 'true', ...labels } },
    status: { allocatable: { cpu: '4', memory: '8Gi', pods: '110' }, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

const requests = { cpu: '200m', memory: '1300Mi' };

void test('places by the VM spec: named CPU model (versioned), unstructured node affinity', () => {
  const decider = policyPlacementDecider();
  const machine = vm(
    {
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'rack', operator: 'In', values: ['r2'] }] }],
          },
        },
      },
    },
    { cpu: { model: 'Icelake-Server-noTSX-v2' } },
  );
  const nodes = [
    node('a', { rack: 'r2' }),
    node('b', { rack: 'r2', 'cpu-model.node.keyvirt.io/Icelake-Server-noTSX': 'true' }),
    node('c', { rack: 'r1', 'cpu-model.node.keyvirt.io/Icelake-Server-noTSX': 'true' }),
  ];
  const result = decider.place({ vm: machine, requests, allowEmulation: false }, nodes, podListUsage([]));
  assert.equal(result.kind, 'Placement');
  if (result.kind !== 'Placement') return;
  assert.equal(result.node, 'b');
  assert.equal(result.nodeHasKvm, true);
  assert.deepEqual(result.affinity, {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          {
            matchExpressions: [
              { key: 'rack', operator: 'In', values: ['r2'] },
              { key: 'kubernetes.io/hostname', operator: 'In', values: ['b'] },
            ],
          },
        ],
      },
    },
    podAffinity: undefined,
    podAntiAffinity: undefined,
  });
});

void test('a VM too big for every node is Unschedulable with a counted reason and per-node details', () => {
  const details: string[] = [];
  const decider = policyPlacementDecider({ onUnschedulable: (d) => details.push(d) });
  const result = decider.place({ vm: vm(), requests: { cpu: '1', memory: '64Gi' }, allowEmulation: true }, [node('a'), node('b')], podListUsage([]));
  assert.deepEqual(result, { kind: 'Unschedulable', message: '0/2 nodes are available: 2 Insufficient memory.' });
  assert.match(details[0] ?? '', /^a: memory: needs 64 GiB, 8 GiB free of 8 GiB allocatable\. b: /);
});

void test('local disks pin the VM to their node; emulation lets TCG nodes in', () => {
  const decider = policyPlacementDecider();
  const nodes = [node('a', { 'keyvirt.io/kvm': 'false' }), node('b')];
  const pinned = decider.place({ vm: vm(), requests, allowEmulation: true, requiredNode: 'a' }, nodes, podListUsage([]));
  assert.equal(pinned.kind === 'Placement' ? pinned.node : pinned.message, 'a');
  assert.equal(pinned.kind === 'Placement' && pinned.nodeHasKvm, false);
  const refused = decider.place({ vm: vm(), requests, allowEmulation: false, requiredNode: 'a' }, nodes, podListUsage([]));
  assert.equal(
    refused.kind === 'Unschedulable' ? refused.message : '',
    "0/2 nodes are available: 1 node(s) didn't hold the VM's local disks, 1 node(s) had no hardware KVM (emulation is not allowed).",
  );
});

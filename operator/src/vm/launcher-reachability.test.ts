import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import { NodeHealthChanges, nodeFenced, reachability, type ReachabilityInput } from './launcher-reachability.ts';

const pod: Pod = { metadata: { name: 'launcher-a', namespace: 'prod', uid: 'p1' }, spec: { containers: [], nodeName: 'n1' } };

function node(ready: string | undefined, extra: { taints?: { key: string; effect: string }[]; annotations?: Record<string, string> } = {}): Node {
  return {
    metadata: { name: 'n1', ...(extra.annotations === undefined ? {} : { annotations: extra.annotations }) },
    spec: extra.taints === undefined ? {} : { taints: extra.taints },
    status: { conditions: ready === undefined ? [] : [{ type: 'Ready', status: ready }] },
  };
}

describe('reachability (detection)', () => {
  const cases: { name: string; input: ReachabilityInput; want: string; fenced?: boolean }[] = [
    { name: 'no pod', input: { pod: undefined, node: undefined, silentMs: undefined }, want: 'reachable' },
    { name: 'unbound pod', input: { pod: { ...pod, spec: { containers: [] } }, node: undefined, silentMs: undefined }, want: 'reachable' },
    { name: 'ready node, heard 100 ms ago', input: { pod, node: node('True'), silentMs: 100 }, want: 'reachable' },
    { name: 'ready node, never heard (starting)', input: { pod, node: node('True'), silentMs: undefined }, want: 'reachable' },
    { name: 'ready node, silent 1999 ms', input: { pod, node: node('True'), silentMs: 1999 }, want: 'reachable' },
    { name: 'ready node, silent 2000 ms', input: { pod, node: node('True'), silentMs: 2000 }, want: 'LauncherUnreachable' },
    { name: 'node NotReady, heard', input: { pod, node: node('False'), silentMs: 10 }, want: 'NodeUnreachable' },
    { name: 'node Unknown, silent', input: { pod, node: node('Unknown'), silentMs: 9000 }, want: 'NodeUnreachable' },
    { name: 'node without Ready condition', input: { pod, node: node(undefined), silentMs: 10 }, want: 'NodeUnreachable' },
    { name: 'node gone from the API', input: { pod, node: undefined, silentMs: 10 }, want: 'NodeUnreachable' },
    {
      name: 'out-of-service taint',
      input: { pod, node: node('False', { taints: [{ key: 'node.kubernetes.io/out-of-service', effect: 'NoExecute' }] }), silentMs: 10 },
      want: 'NodeUnreachable',
      fenced: true,
    },
    { name: 'fenced annotation on a Ready node', input: { pod, node: node('True', { annotations: { 'keyvirt.io/node-fenced': 'true' } }), silentMs: 10 }, want: 'NodeUnreachable', fenced: true },
    { name: 'fenced annotation false', input: { pod, node: node('True', { annotations: { 'keyvirt.io/node-fenced': 'false' } }), silentMs: 10 }, want: 'reachable' },
    { name: 'custom threshold', input: { pod, node: node('True'), silentMs: 600, silenceThresholdMs: 500 }, want: 'LauncherUnreachable' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = reachability(c.input);
      assert.equal(r.kind === 'reachable' ? 'reachable' : r.reason, c.want);
      if (r.kind === 'unreachable') assert.equal(r.fenced, c.fenced ?? false);
    });
  }
});

describe('nodeFenced (fencing)', () => {
  const cases: { name: string; node: Node; want: boolean }[] = [
    { name: 'plain node', node: node('True'), want: false },
    { name: 'out-of-service NoExecute', node: node('False', { taints: [{ key: 'node.kubernetes.io/out-of-service', effect: 'NoExecute' }] }), want: true },
    { name: 'out-of-service NoSchedule', node: node('False', { taints: [{ key: 'node.kubernetes.io/out-of-service', effect: 'NoSchedule' }] }), want: true },
    { name: 'unreachable taint is no fencing', node: node('Unknown', { taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }] }), want: false },
    { name: 'annotation true', node: node('Unknown', { annotations: { 'keyvirt.io/node-fenced': 'true' } }), want: true },
    { name: 'annotation other value', node: node('Unknown', { annotations: { 'keyvirt.io/node-fenced': 'yes' } }), want: false },
  ];
  for (const c of cases) it(c.name, () => assert.equal(nodeFenced(c.node), c.want));
});

describe('NodeHealthChanges', () => {
  it('signals a new node and changes of readiness or fencing, not routine updates', () => {
    const h = new NodeHealthChanges();
    assert.equal(h.changed(node('True')), true, 'new');
    assert.equal(h.changed(node('True')), false, 'same health');
    assert.equal(h.changed(node('Unknown')), true, 'NotReady');
    assert.equal(h.changed(node('False')), false, 'still not Ready');
    assert.equal(h.changed(node('False', { annotations: { 'keyvirt.io/node-fenced': 'true' } })), true, 'fenced');
  });
});

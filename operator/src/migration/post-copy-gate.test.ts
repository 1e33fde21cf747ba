import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../runtime/core-schemas.ts';
import { gatePostCopy, POSTCOPY_NODE_LABEL, POSTCOPY_REASON_NODE_ANNOTATION } from './post-copy-gate.ts';

const node = (name: string, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): Node => ({ metadata: { name, labels, annotations } });

void test('post-copy reaches the launchers only when the target node is labelled capable', () => {
  const nodes = [
    node('capable', { [POSTCOPY_NODE_LABEL]: 'true' }),
    node('refused', { [POSTCOPY_NODE_LABEL]: 'false' }, { [POSTCOPY_REASON_NODE_ANNOTATION]: 'vm.unprivileged_userfaultfd=0 and the node agent is not allowed to set it' }),
    node('undescribed'),
  ];
  const cases: { name: string; postCopy: boolean; target: string | undefined; want: boolean; notice?: RegExp; ha?: boolean }[] = [
    { name: 'allowed, capable target, highly available VM: pre-copy only', postCopy: true, target: 'capable', want: false, ha: true, notice: /highly available: its storage lease passes to the target only after the source has stopped/ },
    { name: 'not allowed, highly available VM: untouched, no notice', postCopy: false, target: 'capable', want: false, ha: true },
    { name: 'not allowed: untouched, no notice', postCopy: false, target: 'refused', want: false },
    { name: 'allowed, capable target', postCopy: true, target: 'capable', want: true },
    { name: 'allowed, target refuses: the node agent\'s reason', postCopy: true, target: 'refused', want: false, notice: /refused cannot receive it \(vm\.unprivileged_userfaultfd=0 and the node agent is not allowed/ },
    { name: 'allowed, target never described', postCopy: true, target: 'undescribed', want: false, notice: /has no keyvirt\.io\/postcopy=true label/ },
    { name: 'allowed, target unknown', postCopy: true, target: 'gone', want: false, notice: /target node gone is unknown/ },
    { name: 'allowed, no target yet', postCopy: true, target: undefined, want: false, notice: /the target node cannot receive it/ },
  ];
  for (const c of cases) {
    const gate = gatePostCopy({ postCopy: c.postCopy, bandwidth: 7 }, c.target, nodes, c.ha ?? false);
    assert.equal(gate.policy.postCopy, c.want, c.name);
    assert.equal(gate.policy.bandwidth, 7, `${c.name}: the rest of the policy kept`);
    if (c.notice === undefined) assert.equal(gate.notice, undefined, c.name);
    else assert.match(gate.notice ?? '', c.notice, c.name);
  }
});

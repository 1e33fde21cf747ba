import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decidePodNetwork, LauncherPodSchema, VmViewSchema } from './pod-network-request.ts';
import type { LauncherPodView, VmView } from './pod-network-request.ts';

const VM_UID = '6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f';
const POD_UID = '0b7c1b2e-9d3f-4a51-8e6a-2f4c1d9e7a10';

function pod(over: { annotations?: Record<string, string>; owner?: Record<string, unknown>; labels?: Record<string, string>; node?: string; phase?: string; deleting?: boolean } = {}): LauncherPodView {
  return LauncherPodSchema.parse({
    metadata: {
      namespace: 'team-a', name: 'launcher-web-1', uid: POD_UID,
      labels: over.labels ?? { 'keyvirt.io/vm': 'web-1', 'keyvirt.io/vm-uid': VM_UID },
      annotations: over.annotations ?? { 'keyvirt.io/pod-network': 'node-agent' },
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid: VM_UID, controller: true, ...over.owner }],
      ...(over.deleting === true ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: { nodeName: over.node ?? 'node-1' },
    status: { phase: over.phase ?? 'Pending' },
  });
}

function vm(interfaces: unknown[], over: Partial<VmView['metadata']> = {}): VmView {
  return VmViewSchema.parse({ metadata: { namespace: 'team-a', name: 'web-1', uid: VM_UID, ...over }, spec: { template: { interfaces } } });
}

void describe('which launcher pods the node agent prepares', () => {
  const masq = vm([{ name: 'default', binding: 'masquerade' }]);
  const cases: [string, LauncherPodView, VmView | undefined, string][] = [
    ['an operator launcher pod with a masquerade VM', pod(), masq, 'prepare'],
    ['a running one', pod({ phase: 'Running' }), masq, 'prepare'],
    ['no annotation', pod({ annotations: {} }), masq, 'skip'],
    ['another value', pod({ annotations: { 'keyvirt.io/pod-network': 'yes' } }), masq, 'skip'],
    ['another node', pod({ node: 'node-2' }), masq, 'skip'],
    ['a finished pod', pod({ phase: 'Succeeded' }), masq, 'skip'],
    ['a pod being deleted', pod({ deleting: true }), masq, 'skip'],
    ['no VM labels', pod({ labels: {} }), masq, 'refuse'],
    ['owned by something else', pod({ owner: { kind: 'ReplicaSet' } }), masq, 'refuse'],
    ['owned by another VM uid', pod({ owner: { uid: '11111111-2222-3333-4444-555555555555' } }), masq, 'refuse'],
    ['owned by a look-alike group', pod({ owner: { apiVersion: 'evil.io/v1' } }), masq, 'refuse'],
    ['the VM is gone', pod(), undefined, 'refuse'],
    ['the VM was recreated (new uid)', pod(), vm([{ name: 'default' }], { uid: '11111111-2222-3333-4444-555555555555' }), 'refuse'],
    ['a VM without interfaces', pod(), vm([]), 'refuse'],
  ];
  for (const [what, p, v, kind] of cases) {
    void it(what, () => assert.equal(decidePodNetwork(p, v, 'node-1').kind, kind));
  }

  void it('takes binding and ports from the VM, never from the pod', () => {
    const d = decidePodNetwork(pod(), vm([{ name: 'lan', binding: 'masquerade', ports: [{ port: 22 }, { port: 53, protocol: 'UDP' }] }, { name: 'other', binding: 'bridge' }]), 'node-1');
    assert.deepEqual(d, {
      kind: 'prepare',
      request: { namespace: 'team-a', pod: 'launcher-web-1', podUid: POD_UID, interfaceName: 'lan', binding: 'masquerade', ports: [{ port: 22, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }] },
    });
    const b = decidePodNetwork(pod(), vm([{ name: 'lan', binding: 'bridge' }]), 'node-1');
    assert.equal(b.kind === 'prepare' ? b.request.binding : b.kind, 'bridge');
  });

  void it('refuses a listed port the launcher keeps for itself', () => {
    const d = decidePodNetwork(pod(), vm([{ name: 'lan', ports: [{ port: 8443 }] }]), 'node-1');
    assert.deepEqual(d, { kind: 'refuse', reason: 'port 8443 is the launcher\'s own' });
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { claimHolder } from './claim-sharing.ts';
import { resolveDisks } from './disk-volumes.ts';

function vm(name: string, o: { claim?: string; created?: string; phase?: string; launcherPod?: string; namespace?: string; deleting?: boolean; domainDisk?: boolean; readOnly?: boolean } = {}): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: {
      name,
      namespace: o.namespace ?? 'prod',
      uid: `${name}-uid`,
      creationTimestamp: o.created ?? '2026-01-01T00:00:00Z',
      ...(o.deleting === true ? { deletionTimestamp: '2026-01-02T00:00:00Z' } : {}),
    },
    spec: {
      runStrategy: 'Always',
      template: {
        memory: { size: '1Gi' },
        disks: [o.domainDisk === true ? { name: 'root', storageDomain: { name: 'sd', size: '1Gi' } } : { name: 'root', readOnly: o.readOnly ?? false, persistentVolumeClaim: { claimName: o.claim ?? 'data' } }],
      },
    },
    ...(o.phase === undefined && o.launcherPod === undefined ? {} : { status: { ...(o.phase === undefined ? {} : { phase: o.phase }), ...(o.launcherPod === undefined ? {} : { launcherPod: o.launcherPod }) } }),
  });
}

void test('one claim, one VM: the running VM, else the older one, holds it', () => {
  const cases: [string, VirtualMachine, VirtualMachine[], string | undefined][] = [
    ['alone', vm('b'), [vm('b')], undefined],
    ['an older VM uses the claim', vm('b', { created: '2026-01-02T00:00:00Z' }), [vm('a'), vm('b', { created: '2026-01-02T00:00:00Z' })], 'prod/a'],
    ['the newer VM is not blocked by a younger one', vm('a'), [vm('a'), vm('b', { created: '2026-01-02T00:00:00Z' })], undefined],
    ['same age: the name decides', vm('b'), [vm('a'), vm('b')], 'prod/a'],
    ['a running younger VM holds it', vm('a'), [vm('a'), vm('b', { created: '2026-01-02T00:00:00Z', launcherPod: 'launcher-b', phase: 'Running' })], 'prod/b'],
    ['a running VM is never blocked', vm('b', { phase: 'Running', launcherPod: 'launcher-b' }), [vm('a'), vm('b')], undefined],
    ['another claim', vm('b'), [vm('a', { claim: 'other' })], undefined],
    ['another namespace', vm('b'), [vm('a', { namespace: 'dev' })], undefined],
    ['an older VM being deleted and stopped no longer holds it', vm('b'), [vm('a', { deleting: true })], undefined],
    ['an older VM being deleted while it still runs holds it', vm('b'), [vm('a', { deleting: true, phase: 'Stopping', launcherPod: 'launcher-a' })], 'prod/a'],
    ["a claim named like another VM's per-disk claim is that VM's", vm('b', { claim: 'keyvirt-disk-a-root' }), [vm('a', { domainDisk: true, created: '2026-01-03T00:00:00Z' })], undefined],
    ["…and a running one holds it", vm('b', { claim: 'keyvirt-disk-a-root' }), [vm('a', { domainDisk: true, phase: 'Running', launcherPod: 'launcher-a' })], 'prod/a'],
    ['readers share: both read-only', vm('b', { readOnly: true }), [vm('a', { readOnly: true, phase: 'Running', launcherPod: 'launcher-a' })], undefined],
    ['a reader is blocked by a running writer', vm('b', { readOnly: true }), [vm('a', { phase: 'Running', launcherPod: 'launcher-a' })], 'prod/a'],
    ['a writer is blocked by an older reader', vm('b', { created: '2026-01-02T00:00:00Z' }), [vm('a', { readOnly: true })], 'prod/a'],
    ["a read-only disk named like another VM's per-disk claim still conflicts", vm('b', { claim: 'keyvirt-disk-a-root', readOnly: true }), [vm('a', { domainDisk: true, phase: 'Running', launcherPod: 'launcher-a' })], 'prod/a'],
  ];
  for (const [name, subject, all, expected] of cases) {
    const claim = subject.spec.template.disks[0]?.persistentVolumeClaim?.claimName ?? '';
    assert.equal(claimHolder(subject, claim, all), expected, name);
  }
});

void test('the second VM on a claim gets ClaimInUse naming the first', async () => {
  const first = vm('a');
  const second = vm('b', { created: '2026-01-02T00:00:00Z' });
  const resolution = await resolveDisks(second, {
    storageDomain: () => undefined,
    claim: () => Promise.resolve({ accessModes: ['ReadWriteOnce'], bound: true }),
    claimHolder: (v, c) => claimHolder(v, c, [first, second]),
  });
  assert.equal(resolution.ok, false);
  if (!resolution.ok) assert.deepEqual(resolution.problems, [{ disk: 'root', reason: 'ClaimInUse', message: 'disk root: PersistentVolumeClaim prod/data is used by VirtualMachine prod/a', transient: false }]);
});

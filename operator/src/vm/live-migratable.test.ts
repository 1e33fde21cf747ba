import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StorageDomain, VirtualMachine, storageDomainIsShared, type StorageDomainInput, type VirtualMachineInput } from '@keyvirt/crds';
import { resolveDisks, type DiskLookup } from './disk-volumes.ts';
import { liveMigratableCondition, notMigratableReasons, type NotMigratableReason } from './live-migratable.ts';

type Template = VirtualMachineInput['spec']['template'];

function vm(template: Partial<Template>): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod' },
    spec: { runStrategy: 'Always', evictionStrategy: 'Shutdown', template: { memory: { size: '1Gi' }, ...template } },
  });
}

function domain(name: string, spec: StorageDomainInput['spec']): StorageDomain {
  return StorageDomain.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name },
    spec,
    status: { phase: 'Active', disks: [{ namespace: 'prod', vmName: 'web-1', diskName: 'root' }] },
  });
}

const domains: Record<string, StorageDomain> = {
  posix: domain('posix', { type: 'posix', posix: { path: '/mnt/cephfs/vm' } }),
  local: domain('local', { type: 'local', local: { path: '/var/lib/keyvirt/images' } }),
  nfs: domain('nfs', { type: 'nfs', nfs: { server: 'nfs.example.internal', path: '/exports/vm' } }),
};
const claims: Record<string, string[]> = { rwx: ['ReadWriteMany'], rwo: ['ReadWriteOnce'] };

const lookup: DiskLookup = {
  storageDomain: (name) => domains[name],
  claim: (_namespace, name) => Promise.resolve(claims[name] === undefined ? undefined : { accessModes: claims[name], bound: true }),
};

const onDomain = (name: string): Template['disks'] => [{ name: 'root', bootOrder: 1, storageDomain: { name, size: '1Gi' } }];
const onClaim = (claimName: string): Template['disks'] => [{ name: 'root', bootOrder: 1, persistentVolumeClaim: { claimName } }];

void describe('notMigratableReasons', () => {
  const cases: [string, Partial<Template>, NotMigratableReason[], RegExp | undefined][] = [
    ['a disk on a posix domain, masquerade, host-model', { disks: onDomain('posix'), interfaces: [{ name: 'default' }] }, [], undefined],
    ['a disk on an nfs domain', { disks: onDomain('nfs') }, [], undefined],
    ['a ReadWriteMany claim', { disks: onClaim('rwx') }, [], undefined],
    ['a named CPU model', { disks: onDomain('posix'), cpu: { model: 'Skylake-Server' } }, [], undefined],
    ['a disk on a local domain', { disks: onDomain('local') }, ['DisksNotLiveMigratable'], /disk root is on StorageDomain local of type local, a directory on one node/],
    ['a ReadWriteOnce claim', { disks: onClaim('rwo') }, ['DisksNotLiveMigratable'], /PersistentVolumeClaim rwo, which is not ReadWriteMany/],
    [
      'a host device',
      { disks: onDomain('posix'), hostDevices: [{ name: 'gpu0', resourceName: 'keyvirt.io/pci-10de-1eb8' }] },
      ['HostDeviceNotLiveMigratable'],
      /host device gpu0 \(keyvirt.io\/pci-10de-1eb8\) is passed through/,
    ],
    ['a bridge interface', { disks: onDomain('posix'), interfaces: [{ name: 'lan', binding: 'bridge' }] }, ['InterfaceNotLiveMigratable'], /interface lan uses the bridge binding/],
    ['host-passthrough CPU', { disks: onDomain('posix'), cpu: { model: 'host-passthrough' } }, ['CPUModeNotLiveMigratable'], /host-passthrough/],
    [
      'everything at once, in the fixed order',
      {
        cpu: { model: 'host-passthrough' },
        interfaces: [{ name: 'lan', binding: 'bridge' }],
        hostDevices: [{ name: 'gpu0', resourceName: 'keyvirt.io/pci-10de-1eb8' }],
        disks: [
          { name: 'root', bootOrder: 1, storageDomain: { name: 'local', size: '1Gi' } },
          { name: 'data', persistentVolumeClaim: { claimName: 'rwo' } },
        ],
      },
      ['DisksNotLiveMigratable', 'DisksNotLiveMigratable', 'HostDeviceNotLiveMigratable', 'InterfaceNotLiveMigratable', 'CPUModeNotLiveMigratable'],
      undefined,
    ],
  ];
  for (const [name, template, expected, message] of cases) {
    void it(name, async () => {
      const machine = vm(template);
      const resolution = await resolveDisks(machine, lookup);
      assert.ok(resolution.ok, JSON.stringify(resolution));
      const reasons = notMigratableReasons(machine, resolution.disks);
      assert.deepEqual(
        reasons.map((r) => r.reason),
        expected,
      );
      if (message !== undefined) assert.match(reasons[0]?.message ?? '', message);
    });
  }

  void it('iscsi and ReadWriteOnce storageClass domains are not shared', () => {
    const rwoClass = domain('rwo-class', { type: 'storageClass', storageClass: { name: 'fast', accessMode: 'ReadWriteOnce' } });
    assert.equal(storageDomainIsShared(rwoClass.spec), false);
    assert.equal(storageDomainIsShared(domain('rwx-class', { type: 'storageClass', storageClass: { name: 'fast' } }).spec), true);
    assert.equal(storageDomainIsShared(domain('lun', { type: 'iscsi', iscsi: { portal: 'san', iqn: 'iqn.2024-01.io.example:x', lun: 0 } }).spec), false);
    assert.equal(storageDomainIsShared(domains.posix?.spec ?? rwoClass.spec), true);
    assert.equal(storageDomainIsShared(domains.local?.spec ?? rwoClass.spec), false);
  });
});

void describe('liveMigratableCondition', () => {
  void it('True with reason Migratable when nothing blocks', () => {
    assert.deepEqual(liveMigratableCondition([]), { type: 'LiveMigratable', status: 'True', reason: 'Migratable', message: 'the VM can be live-migrated' });
  });
  void it('False with the first reason in the fixed order and every message', () => {
    const c = liveMigratableCondition([
      { reason: 'CPUModeNotLiveMigratable', message: 'cpu' },
      { reason: 'DisksNotLiveMigratable', message: 'disk a' },
      { reason: 'DisksNotLiveMigratable', message: 'disk b' },
    ]);
    assert.deepEqual(c, { type: 'LiveMigratable', status: 'False', reason: 'DisksNotLiveMigratable', message: 'disk a; disk b; cpu' });
  });
});

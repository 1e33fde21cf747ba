import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { perDiskClaim, planBackingVolume } from './backing-volume.ts';

const owner = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'sd', uid: 'uid-1', controller: true, blockOwnerDeletion: true };

function domain(spec: StorageDomainInput['spec']): StorageDomain {
  return StorageDomain.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', metadata: { name: 'sd', uid: 'uid-1' }, spec });
}

interface PvShape {
  metadata: { name: string; ownerReferences: unknown[] };
  spec: Record<string, unknown> & { accessModes: string[]; claimRef: { namespace: string; name: string } };
}

function pv(spec: StorageDomainInput['spec']): PvShape {
  return planBackingVolume(domain(spec), 'keyvirt-system', owner).persistentVolume as unknown as PvShape;
}

void test('nfs: a ReadWriteMany PV with the native source and mount options, pre-bound to the claim', () => {
  const plan = planBackingVolume(domain({ type: 'nfs', nfs: { server: 'nfs.example.internal', path: '/exports/vm', version: '4.2', mountOptions: ['nconnect=4'] } }), 'keyvirt-system', owner);
  const volume = plan.persistentVolume as unknown as PvShape;
  assert.deepEqual(volume.spec.nfs, { server: 'nfs.example.internal', path: '/exports/vm' });
  assert.deepEqual(volume.spec.accessModes, ['ReadWriteMany']);
  assert.deepEqual(volume.spec.mountOptions, ['nfsvers=4.2', 'nconnect=4']);
  assert.equal(volume.spec.persistentVolumeReclaimPolicy, 'Retain');
  assert.equal(volume.spec.storageClassName, '');
  assert.deepEqual(volume.spec.claimRef, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'keyvirt-system', name: 'keyvirt-sd-sd' });
  assert.deepEqual(volume.metadata.ownerReferences, [owner]);
  assert.deepEqual(plan.claimRef, { namespace: 'keyvirt-system', name: 'keyvirt-sd-sd' });
  assert.equal((plan.claim as { spec: { volumeName: string } }).spec.volumeName, 'keyvirt-sd-sd');
  assert.equal(plan.notMigratableReason, undefined);
});

void test('iscsi: portal with the default port, CHAP secret, ReadWriteOnce and the reason VMs cannot migrate', () => {
  const plan = planBackingVolume(
    domain({ type: 'iscsi', iscsi: { portal: '10.0.0.5', iqn: 'iqn.2024-01.io.example:vmdata', lun: 3, chapSecretRef: { name: 'chap', namespace: 'keyvirt-system' } } }),
    'keyvirt-system',
    owner,
  );
  const volume = plan.persistentVolume as unknown as PvShape;
  assert.deepEqual(volume.spec.iscsi, {
    targetPortal: '10.0.0.5:3260',
    iqn: 'iqn.2024-01.io.example:vmdata',
    lun: 3,
    fsType: 'ext4',
    chapAuthSession: true,
    secretRef: { name: 'chap', namespace: 'keyvirt-system' },
  });
  assert.deepEqual(volume.spec.accessModes, ['ReadWriteOnce']);
  assert.match(plan.notMigratableReason ?? '', /mounted ReadWriteOnce: one node at a time/);
  assert.equal((pv({ type: 'iscsi', iscsi: { portal: 'san:3261', iqn: 'iqn.2024-01.io.example:x', lun: 0 } }).spec.iscsi as { targetPortal: string }).targetPortal, 'san:3261');
});

void test('fc: WWNs normalised, LUN, ReadWriteOnce', () => {
  const volume = pv({ type: 'fc', fc: { wwns: ['50:06:0E:80:10:49:CF:D1', '50060e801049cfd2'], lun: 7 } });
  assert.deepEqual(volume.spec.fc, { targetWWNs: ['50060e801049cfd1', '50060e801049cfd2'], lun: 7, fsType: 'ext4' });
  assert.deepEqual(volume.spec.accessModes, ['ReadWriteOnce']);
});

void test('local: a hostPath PV pinned to its node; single node, so not live-migratable', () => {
  const plan = planBackingVolume(domain({ type: 'local', local: { path: '/var/lib/keyvirt/images', nodeName: 'node-1' } }), 'keyvirt-system', owner);
  const volume = plan.persistentVolume as unknown as PvShape;
  assert.deepEqual(volume.spec.hostPath, { path: '/var/lib/keyvirt/images', type: 'DirectoryOrCreate' });
  assert.deepEqual(volume.spec.nodeAffinity, {
    required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-1'] }] }] },
  });
  assert.equal(plan.nodeName, 'node-1');
  assert.match(plan.notMigratableReason ?? '', /a directory on one node \(type local\)/);
});

void test('pvc: the existing claim, nothing created', () => {
  const plan = planBackingVolume(domain({ type: 'pvc', pvc: { claimName: 'shared', namespace: 'storage' } }), 'keyvirt-system', owner);
  assert.equal(plan.persistentVolume, undefined);
  assert.equal(plan.claim, undefined);
  assert.deepEqual(plan.claimRef, { namespace: 'storage', name: 'shared' });
});

void test('storageClass: no domain volume; one claim per disk with room for qcow2 metadata', () => {
  const sd = domain({ type: 'storageClass', storageClass: { name: 'fast', accessMode: 'ReadWriteOnce' } });
  const plan = planBackingVolume(sd, 'keyvirt-system', owner);
  assert.equal(plan.claimRef, undefined);
  assert.match(plan.notMigratableReason ?? '', /ReadWriteOnce/);
  const claim = perDiskClaim(sd, { namespace: 'prod', claimName: 'web-1-root', sizeBytes: 10 * 2 ** 30 }, owner) as { spec: Record<string, unknown> };
  assert.deepEqual(claim.spec, { accessModes: ['ReadWriteOnce'], storageClassName: 'fast', volumeMode: 'Filesystem', resources: { requests: { storage: '10919Mi' } } });
});

void test('long domain names still give valid object names', () => {
  const long = 'a'.repeat(240);
  const plan = planBackingVolume(
    StorageDomain.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', metadata: { name: long, uid: 'u' }, spec: { type: 'nfs', nfs: { server: 's', path: '/p' } } }),
    'ns',
    owner,
  );
  assert.ok((plan.claimRef?.name.length ?? 0) <= 253);
});

void test('posix: a ReadWriteMany hostPath PV on no particular node, the directory must already exist', () => {
  const plan = planBackingVolume(domain({ type: 'posix', posix: { path: '/mnt/cephfs/vmdata' } }), 'keyvirt-system', owner);
  const volume = plan.persistentVolume as unknown as PvShape;
  assert.deepEqual(volume.spec.hostPath, { path: '/mnt/cephfs/vmdata', type: 'Directory' });
  assert.deepEqual(volume.spec.accessModes, ['ReadWriteMany']);
  assert.equal(volume.spec.nodeAffinity, undefined);
  assert.equal(plan.nodeName, undefined);
  assert.equal(plan.accessMode, 'ReadWriteMany');
  assert.equal(plan.notMigratableReason, undefined);
  assert.deepEqual(plan.claimRef, { namespace: 'keyvirt-system', name: 'keyvirt-sd-sd' });
});

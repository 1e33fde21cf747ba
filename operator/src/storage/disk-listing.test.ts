import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { domainDiskState } from './disk-listing.ts';

function domain(status: StorageDomainInput['status']): StorageDomain {
  return StorageDomain.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', metadata: { name: 'sd' }, spec: { type: 'nfs', nfs: { server: 'nfs', path: '/x' } }, status });
}

void test('a disk is ready only when listed for the same VM UID', () => {
  const vm = { namespace: 'prod', vmName: 'web-1', vmUid: 'u2', diskName: 'root' };
  const entry = { namespace: 'prod', vmName: 'web-1', diskName: 'root' };
  const cases: [string, StorageDomainInput['status'], string, string?][] = [
    ['listed for this UID', { disks: [{ ...entry, vmUid: 'u2' }] }, 'ready'],
    ['listed without a UID (status written before UIDs)', { disks: [entry] }, 'ready'],
    ['listed for an earlier VM of the same name', { disks: [{ ...entry, vmUid: 'u1' }] }, 'pending', 'the image of an earlier VM named web-1 on StorageDomain sd is deleted first'],
    ['refused', { refusedDisks: [{ ...entry, reason: 'Overcommitted', message: 'too big' }] }, 'refused', 'too big'],
    ['earlier image listed and the new one refused until it goes', { disks: [{ ...entry, vmUid: 'u1' }], refusedDisks: [{ ...entry, reason: 'PreviousImagePending', message: 'old first' }] }, 'refused', 'old first'],
    ['not listed', {}, 'pending', 'not created yet'],
  ];
  for (const [name, status, state, message] of cases) {
    const got = domainDiskState(domain(status), vm);
    assert.equal(got.state, state, name);
    if (message !== undefined && got.state !== 'ready') assert.ok(got.message.includes(message), `${name}: ${got.message}`);
  }
});

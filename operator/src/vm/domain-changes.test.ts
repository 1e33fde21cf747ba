import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { vmsConcernedByDomainUpdate } from './domain-changes.ts';

type Status = NonNullable<StorageDomainInput['status']>;

function domain(status: Status, path = '/mnt/shared'): StorageDomain {
  return StorageDomain.parse({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', metadata: { name: 'shared' }, spec: { type: 'posix', posix: { path } }, status });
}

const disks = [
  { namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi' },
  { namespace: 'prod', vmName: 'web-2', diskName: 'root', size: '10Gi' },
  { namespace: 'dev', vmName: 'web-1', diskName: 'root', size: '10Gi' },
];
const everyVm = (): string[] => ['prod/web-1', 'prod/web-2', 'dev/web-1', 'prod/db'];

void describe('vmsConcernedByDomainUpdate', () => {
  void it('a probe that rewrote the capacity figures, counts and conditions concerns no VM', () => {
    const old = domain({ phase: 'Active', capacity: '1Ti', used: '100Gi', free: '924Gi', diskCount: 3, vmCount: 3, disks });
    const probed = domain({ phase: 'Active', capacity: '1Ti', used: '101Gi', free: '923Gi', diskCount: 3, vmCount: 3, disks, conditions: [{ type: 'Ready', status: 'True', reason: 'Probed', message: '', lastTransitionTime: '2026-11-30T07:00:00Z' }] });
    assert.deepEqual(vmsConcernedByDomainUpdate(old, probed, everyVm), []);
  });

  void it('a disk entry added, changed or refused concerns its VM only', () => {
    const old = domain({ phase: 'Active', disks });
    const grown = domain({ phase: 'Active', disks: [disks[0], { ...disks[1], size: '20Gi' }, disks[2], { namespace: 'prod', vmName: 'db', diskName: 'data' }] });
    assert.deepEqual([...vmsConcernedByDomainUpdate(old, grown, everyVm)].sort(), ['prod/db', 'prod/web-2']);
    const refused = domain({ phase: 'Active', disks: disks.slice(0, 2), refusedDisks: [{ namespace: 'dev', vmName: 'web-1', diskName: 'root', reason: 'Overcommitted', message: 'full' }] });
    assert.deepEqual(vmsConcernedByDomainUpdate(old, refused, everyVm), ['dev/web-1'], 'same name, another namespace: another VM');
  });

  void it('a change of phase or spec concerns every VM on the domain', () => {
    const old = domain({ phase: 'Active', disks });
    assert.deepEqual(vmsConcernedByDomainUpdate(old, domain({ phase: 'PreparingForMaintenance', disks }), everyVm), everyVm());
    assert.deepEqual(vmsConcernedByDomainUpdate(old, domain({ phase: 'Active', disks }, '/mnt/other'), everyVm), everyVm());
  });
});

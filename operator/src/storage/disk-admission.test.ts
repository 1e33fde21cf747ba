import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseQuantity } from '@keyvirt/crds';
import { admitDisks, type DomainGate, type WantedByVm } from './disk-admission.ts';
import type { ListedDisk } from './disk-retention.ts';

const GiB = 2 ** 30;

function wanted(vmName: string, sizeGiB: number, vmCreatedMs: number, vmUid = `${vmName}-uid`): WantedByVm {
  return {
    namespace: 'prod',
    vmName,
    diskName: 'root',
    image: `images/prod/${vmName}/root.qcow2`,
    format: 'qcow2',
    size: `${sizeGiB}Gi`,
    sizeBytes: sizeGiB * GiB,
    vmUid,
    vmCreatedMs,
  };
}

const listedDisk = (vmName: string, sizeGiB: number, vmUid = `${vmName}-uid`): ListedDisk => ({ namespace: 'prod', vmName, diskName: 'root', size: `${sizeGiB}Gi`, vmUid });
const open: DomainGate = { open: true };

void test('admission: thin disks up to capacity x overcommitPercent, older VMs first, the old image of a namesake first', () => {
  const cases: {
    name: string;
    wanted: WantedByVm[];
    listed: ListedDisk[];
    gate?: DomainGate;
    capacityGiB?: number;
    percent?: number;
    create: string[];
    refused: [string, string][];
  }[] = [
    { name: 'within the limit', wanted: [wanted('a', 100, 1)], listed: [], capacityGiB: 100, percent: 200, create: ['a'], refused: [] },
    { name: 'exactly at the limit', wanted: [wanted('a', 200, 1)], listed: [], capacityGiB: 100, percent: 200, create: ['a'], refused: [] },
    { name: 'one byte past the limit', wanted: [wanted('a', 201, 1)], listed: [], capacityGiB: 100, percent: 200, create: [], refused: [['a', 'Overcommitted']] },
    { name: 'existing disks count', wanted: [wanted('b', 50, 2)], listed: [listedDisk('a', 180)], capacityGiB: 100, percent: 200, create: [], refused: [['b', 'Overcommitted']] },
    {
      name: 'the older VM gets the space, whatever the list order',
      wanted: [wanted('young', 150, 20), wanted('old', 150, 10)],
      listed: [],
      capacityGiB: 100,
      percent: 200,
      create: ['old'],
      refused: [['young', 'Overcommitted']],
    },
    { name: 'no capacity known: no limit', wanted: [wanted('a', 5000, 1)], listed: [], create: ['a'], refused: [] },
    { name: 'no overcommit at 100%', wanted: [wanted('a', 101, 1)], listed: [], capacityGiB: 100, percent: 100, create: [], refused: [['a', 'Overcommitted']] },
    { name: 'already listed for the same VM: nothing to do', wanted: [wanted('a', 10, 1)], listed: [listedDisk('a', 10)], capacityGiB: 100, percent: 200, create: [], refused: [] },
    {
      name: 'listed for a VM of another UID: its deletion comes first',
      wanted: [wanted('a', 10, 1, 'new-uid')],
      listed: [listedDisk('a', 10, 'old-uid')],
      capacityGiB: 100,
      percent: 200,
      create: [],
      refused: [['a', 'PreviousImagePending']],
    },
    {
      name: 'maintenance',
      wanted: [wanted('a', 10, 1)],
      listed: [],
      gate: { open: false, reason: 'Maintenance', message: 'in maintenance' },
      create: [],
      refused: [['a', 'Maintenance']],
    },
    { name: 'not measured yet: waits without a refusal', wanted: [wanted('a', 10, 1)], listed: [], gate: { open: false, reason: 'NotMeasured', message: '' }, create: [], refused: [] },
  ];
  for (const c of cases) {
    const result = admitDisks({
      wanted: c.wanted,
      listed: c.listed,
      gate: c.gate ?? open,
      capacityBytes: c.capacityGiB === undefined ? undefined : c.capacityGiB * GiB,
      overcommitPercent: c.percent ?? 200,
      parseBytes: parseQuantity,
    });
    assert.deepEqual(result.create.map((d) => d.vmName), c.create, c.name);
    assert.deepEqual(result.refused.map((r) => [r.disk.vmName, r.reason]), c.refused, c.name);
  }
});

void test('an overcommit refusal names the sizes and the limit', () => {
  const result = admitDisks({ wanted: [wanted('b', 50, 2)], listed: [listedDisk('a', 180)], gate: open, capacityBytes: 100 * GiB, overcommitPercent: 200, parseBytes: parseQuantity });
  assert.equal(result.refused[0]?.message, 'disk root (50Gi) would bring the disks on the domain to 230Gi, over its limit of 200Gi (200% of 100Gi)');
});

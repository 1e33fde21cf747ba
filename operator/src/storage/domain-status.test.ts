import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { bytesQuantity, domainStatus, type DomainObservation } from './domain-status.ts';
import { transitionEvents } from './status-events.ts';

const GiB = 2 ** 30;

function domain(spec: Partial<StorageDomainInput['spec']> = {}, status?: StorageDomainInput['status']): StorageDomain {
  return StorageDomain.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name: 'sd1', generation: 3 },
    spec: { type: 'local', local: { path: '/var/lib/keyvirt/sd1' }, thresholds: { warningPercent: 80, criticalFreeGiB: 5 }, ...spec },
    ...(status === undefined ? {} : { status }),
  });
}

function observe(o: Partial<DomainObservation> = {}): DomainObservation {
  return {
    backing: { state: 'ready' },
    capacity: { capacityBytes: 100 * GiB, usedBytes: 40 * GiB, freeBytes: 60 * GiB },
    measurable: true,
    probed: true,
    runningVms: [],
    vms: [],
    disks: [],
    deleting: false,
    now: new Date('2026-01-01T00:00:00Z'),
    ...o,
  };
}

const condition = (s: ReturnType<typeof domainStatus>, type: string): { status: string; reason: string; message: string } | undefined =>
  s.conditions?.find((c) => c.type === type);

void test('phases from the backing volume, the probe and maintenance', () => {
  const cases: [string, StorageDomain, DomainObservation, string][] = [
    ['claim not bound yet', domain(), observe({ backing: { state: 'waiting', reason: 'ClaimNotBound', message: 'x is Pending' }, capacity: undefined, probed: false }), 'Activating'],
    ['bound, not measured', domain(), observe({ capacity: undefined, probed: false }), 'Activating'],
    ['probed, report lost', domain(), observe({ capacity: undefined }), 'Active'],
    ['measured', domain(), observe(), 'Active'],
    ['missing claim', domain(), observe({ backing: { state: 'error', reason: 'ClaimNotFound', message: 'gone' } }), 'Error'],
    ['maintenance with a running VM', domain({ maintenance: true }), observe({ runningVms: ['prod/web-1'] }), 'PreparingForMaintenance'],
    ['maintenance, nothing running', domain({ maintenance: true }), observe({ vms: ['prod/web-1'] }), 'Maintenance'],
    ['storageClass domains need no probe', domain({ type: 'storageClass', local: undefined, storageClass: { name: 'fast' } }), observe({ measurable: false, capacity: undefined, probed: false }), 'Active'],
  ];
  for (const [name, sd, o, phase] of cases) assert.equal(domainStatus(sd, o).phase, phase, name);
});

void test('capacity as quantities and the warning/critical conditions at the spec thresholds', () => {
  const healthy = domainStatus(domain(), observe());
  assert.deepEqual([healthy.capacity, healthy.used, healthy.free], ['100Gi', '40Gi', '60Gi']);
  assert.equal(condition(healthy, 'LowSpace')?.status, 'False');
  assert.equal(condition(healthy, 'CriticalSpace')?.status, 'False');
  assert.equal(condition(healthy, 'Ready')?.status, 'True');

  const low = domainStatus(domain(), observe({ capacity: { capacityBytes: 100 * GiB, usedBytes: 85 * GiB, freeBytes: 15 * GiB } }));
  assert.equal(condition(low, 'LowSpace')?.status, 'True');
  assert.match(condition(low, 'LowSpace')?.message ?? '', /85\.0% used, 15Gi free of 100Gi \(warning at 80%\)/);
  assert.equal(condition(low, 'CriticalSpace')?.status, 'False');

  const critical = domainStatus(domain(), observe({ capacity: { capacityBytes: 100 * GiB, usedBytes: 96 * GiB, freeBytes: 4 * GiB } }));
  assert.equal(condition(critical, 'CriticalSpace')?.status, 'True');
  assert.equal(condition(critical, 'Ready')?.reason, 'CriticalSpace');
  assert.equal(critical.phase, 'Active');
});

void test('maintenance refused while VMs run: condition and a warning event once', () => {
  const sd = domain({ maintenance: true });
  const blocked = domainStatus(sd, observe({ runningVms: ['prod/web-1', 'prod/web-2'], vms: ['prod/web-1', 'prod/web-2'] }));
  assert.deepEqual(
    { status: condition(blocked, 'MaintenanceBlocked')?.status, reason: condition(blocked, 'MaintenanceBlocked')?.reason },
    { status: 'True', reason: 'VmsRunning' },
  );
  assert.match(condition(blocked, 'MaintenanceBlocked')?.message ?? '', /2 running VM\(s\) use the domain: prod\/web-1, prod\/web-2/);
  const active = domainStatus(domain(), observe());
  const events = transitionEvents(active, blocked);
  assert.deepEqual(events.map((e) => `${e.type}/${e.reason}`), ['Normal/PreparingForMaintenance', 'Warning/MaintenanceBlocked']);
  assert.deepEqual(transitionEvents(blocked, blocked), [], 'no event when nothing changed');
  const done = domainStatus(sd, observe());
  assert.equal(done.phase, 'Maintenance');
  assert.equal(condition(done, 'MaintenanceBlocked')?.status, 'False');
});

void test('deletion is blocked while disks remain', () => {
  const disks = [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '20Gi' }];
  const blocked = domainStatus(domain(), observe({ deleting: true, disks, vms: ['prod/web-1'] }));
  assert.equal(condition(blocked, 'DeletionBlocked')?.status, 'True');
  assert.match(condition(blocked, 'DeletionBlocked')?.message ?? '', /holds 1 disk\(s\) \(prod\/web-1\/root\) used by 1 VM\(s\)/);
  assert.equal(blocked.diskCount, 1);
  assert.equal(blocked.vmCount, 1);
  assert.deepEqual(blocked.disks, disks);
});

void test('a condition keeps its transition time while its status holds', () => {
  const first = domainStatus(domain(), observe());
  const later = domainStatus(domain({}, first), observe({ now: new Date('2026-01-01T01:00:00Z'), capacity: { capacityBytes: 100 * GiB, usedBytes: 41 * GiB, freeBytes: 59 * GiB } }));
  assert.equal(condition(later, 'Ready') && later.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, '2026-01-01T00:00:00Z');
  assert.equal(later.conditions?.[0]?.observedGeneration, 3);
});

void test('bytes as quantities', () => {
  assert.equal(bytesQuantity(5 * GiB), '5Gi');
  assert.equal(bytesQuantity(1536 * 2 ** 20), '1536Mi');
  assert.equal(bytesQuantity(1536 * 2 ** 20 + 1234), '1536Mi');
  assert.equal(bytesQuantity(0), '0Gi');
});

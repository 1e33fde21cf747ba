import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { assessPciDevices, listPciDevices, pciResourceCounts } from './pci-discovery.ts';

const SYSFS = fileURLToPath(new URL('../../../test/fixtures/sysfs/passthrough-host', import.meta.url));

void test('reads vendor, device, class, IOMMU group and driver from sysfs', async () => {
  const devices = await listPciDevices(SYSFS);
  assert.equal(devices.length, 10);
  assert.deepEqual(
    devices.find((d) => d.address === '0000:01:00.0'),
    { address: '0000:01:00.0', vendorId: '10de', deviceId: '1eb8', classCode: '030200', iommuGroup: '2', driver: 'vfio-pci' },
  );
  const virtio = devices.find((d) => d.address === '0000:06:00.0');
  assert.equal(virtio?.iommuGroup, undefined);
  assert.equal(virtio?.driver, 'virtio-pci');
  assert.equal(devices.find((d) => d.address === '0000:00:00.0')?.driver, undefined);
});

void test('only vfio-bound endpoints in viable IOMMU groups are assignable', async () => {
  const assessed = assessPciDevices(await listPciDevices(SYSFS));
  const verdict = Object.fromEntries(assessed.map((a) => [a.device.address, a.assignable ? 'ok' : a.reason]));
  assert.deepEqual(verdict, {
    '0000:01:00.0': 'ok',
    '0000:01:00.1': 'ok',
    '0000:02:00.0': 'ok',
    '0000:03:00.0': 'bound to i40e, not vfio-pci',
    '0000:04:00.0': 'ok',
    '0000:05:00.0': 'IOMMU group 6 also holds 0000:05:00.1 (ixgbe) used by the host',
    '0000:05:00.1': 'bound to ixgbe, not vfio-pci',
    '0000:06:00.0': 'no IOMMU group (IOMMU off or absent)',
  });
});

void test('assignable devices are counted per vendor-device resource', async () => {
  const counts = pciResourceCounts(assessPciDevices(await listPciDevices(SYSFS)));
  assert.deepEqual(Object.fromEntries(counts), {
    'keyvirt.io/pci-10de-1eb8': 2,
    'keyvirt.io/pci-10de-10f8': 1,
    'keyvirt.io/pci-144d-a808': 1,
  });
});

void test('a host without a PCI tree has no devices', async () => {
  assert.deepEqual(await listPciDevices('/nonexistent-sysfs-root'), []);
});

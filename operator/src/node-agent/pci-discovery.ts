// PCI devices that can be passed through to a guest with VFIO, read from sysfs
// (<root>/bus/pci/devices/*: vendor, device, class, iommu_group, driver). A device
// is assignable when it is an endpoint (not a bridge), sits in an IOMMU group, is
// bound to vfio-pci, and every other endpoint in its group is bound to vfio-pci or
// to no driver (VFIO hands out whole groups).
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pciResourceName } from './node-label-keys.ts';

export interface PciDevice {
  /** Domain:bus:slot.function, e.g. 0000:01:00.0. */
  readonly address: string;
  /** Four hex digits, lower case, without 0x. */
  readonly vendorId: string;
  readonly deviceId: string;
  /** Six hex digits: class, subclass, programming interface. */
  readonly classCode: string;
  readonly iommuGroup: string | undefined;
  readonly driver: string | undefined;
}

export interface PciAssessment {
  readonly device: PciDevice;
  readonly resourceName: string;
  readonly assignable: boolean;
  /** Why a device is not assignable (empty when it is). */
  readonly reason: string;
}

const VFIO_DRIVER = 'vfio-pci';
/** PCI base class 0x06 is bridges (host, ISA, PCI-to-PCI…): never passed through. */
const BRIDGE_CLASS = '06';

function hexId(raw: string, digits: number): string {
  return raw.trim().toLowerCase().replace(/^0x/, '').padStart(digits, '0');
}

async function linkName(path: string): Promise<string | undefined> {
  try {
    return basename(await readlink(path));
  } catch {
    return undefined;
  }
}

async function readDevice(dir: string, address: string): Promise<PciDevice> {
  const [vendor, device, klass] = await Promise.all(
    ['vendor', 'device', 'class'].map((f) => readFile(join(dir, f), 'utf8')),
  );
  return {
    address,
    vendorId: hexId(vendor ?? '', 4),
    deviceId: hexId(device ?? '', 4),
    classCode: hexId(klass ?? '', 6),
    iommuGroup: await linkName(join(dir, 'iommu_group')),
    driver: await linkName(join(dir, 'driver')),
  };
}

/** Every PCI function under `<sysfsRoot>/bus/pci/devices`, sorted by address. A missing tree yields none. */
export async function listPciDevices(sysfsRoot: string): Promise<PciDevice[]> {
  const base = join(sysfsRoot, 'bus', 'pci', 'devices');
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch {
    return [];
  }
  const devices = await Promise.all(entries.sort().map((address) => readDevice(join(base, address), address)));
  return devices;
}

function isBridge(device: PciDevice): boolean {
  return device.classCode.startsWith(BRIDGE_CLASS);
}

function assess(device: PciDevice, groupMembers: readonly PciDevice[]): { assignable: boolean; reason: string } {
  if (isBridge(device)) return { assignable: false, reason: 'a PCI bridge' };
  if (device.iommuGroup === undefined) return { assignable: false, reason: 'no IOMMU group (IOMMU off or absent)' };
  if (device.driver !== VFIO_DRIVER) {
    return { assignable: false, reason: `bound to ${device.driver ?? 'no driver'}, not ${VFIO_DRIVER}` };
  }
  const blockers = groupMembers.filter(
    (other) => other.address !== device.address && !isBridge(other) && other.driver !== undefined && other.driver !== VFIO_DRIVER,
  );
  if (blockers.length > 0) {
    const names = blockers.map((b) => `${b.address} (${b.driver ?? ''})`).join(', ');
    return { assignable: false, reason: `IOMMU group ${device.iommuGroup} also holds ${names} used by the host` };
  }
  return { assignable: true, reason: '' };
}

/** Each non-bridge device with whether it can be passed through, and why not. */
export function assessPciDevices(devices: readonly PciDevice[]): PciAssessment[] {
  const groups = new Map<string, PciDevice[]>();
  for (const d of devices) {
    if (d.iommuGroup === undefined) continue;
    const members = groups.get(d.iommuGroup) ?? [];
    members.push(d);
    groups.set(d.iommuGroup, members);
  }
  return devices
    .filter((d) => !isBridge(d))
    .map((device) => ({
      device,
      resourceName: pciResourceName(device.vendorId, device.deviceId),
      ...assess(device, device.iommuGroup === undefined ? [] : (groups.get(device.iommuGroup) ?? [])),
    }));
}

/** Extended resource name → how many assignable devices back it. */
export function pciResourceCounts(assessments: readonly PciAssessment[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of assessments) {
    if (a.assignable) counts.set(a.resourceName, (counts.get(a.resourceName) ?? 0) + 1);
  }
  return counts;
}

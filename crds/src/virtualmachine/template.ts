// VirtualMachine spec.template: the virtual hardware of one VM (CPU, memory, disks,
// network interfaces, host devices, cloud-init, guest agent, machine type).
import { z } from 'zod';
import { byteSize, dnsLabel, dnsSubdomain, int32 } from '../fields.ts';
import { duplicatePaths, unless, withRules } from '../validation-rule.ts';
import { parseQuantity } from '../quantity.ts';

export const MAX_VCPUS = 256;
export const MEMORY_MIN = '16Mi';
export const MEMORY_MAX = '4Ti';
export const DISK_SIZE_MIN = '1Mi';
export const DISK_SIZE_MAX = '64Ti';
/** The q35 machine's AHCI controller has six ports. */
export const MAX_SATA_DISKS = 6;

export const CPU_MODEL_HOST_PASSTHROUGH = 'host-passthrough';
export const CPU_MODEL_HOST_MODEL = 'host-model';

export const Cpu = withRules(
  z
    .object({
      model: z
        .string()
        .max(64)
        .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: 'cpu.model must be host-passthrough, host-model or a QEMU CPU model name such as Skylake-Server' })
        .default(CPU_MODEL_HOST_MODEL)
        .describe('host-passthrough (the node CPU as is), host-model (the closest named model with the node\'s features, the default), or a named QEMU CPU model such as Skylake-Server-v4; a named model lets the VM migrate between different hosts.'),
      sockets: int32(1, 64).default(1).describe('Virtual CPU sockets (1-64).'),
      cores: int32(1, 128).default(1).describe('Cores per socket (1-128).'),
      threads: int32(1, 8).default(1).describe('Threads per core (1-8).'),
      dedicatedCpuPlacement: z
        .boolean()
        .default(false)
        .describe('Pin every vCPU to its own host CPU (needs a node with the static CPU manager policy); the launcher pod then gets Guaranteed QoS.'),
    })
    .describe('The virtual CPU topology and model.'),
  [
    {
      cel: `self.sockets * self.cores * self.threads <= ${MAX_VCPUS}`,
      message: `the VM may have at most ${MAX_VCPUS} vCPUs (sockets × cores × threads)`,
      violations: (c) => unless(c.sockets * c.cores * c.threads <= MAX_VCPUS),
    },
  ],
);
export type Cpu = z.infer<typeof Cpu>;

export const HUGEPAGE_SIZES = ['2Mi', '1Gi'] as const;
export type HugepageSize = (typeof HUGEPAGE_SIZES)[number];

export const Memory = withRules(
  z
    .object({
      size: byteSize('memory.size', MEMORY_MIN, MEMORY_MAX).describe(`The guest RAM, a quantity between ${MEMORY_MIN} and ${MEMORY_MAX} (e.g. 2Gi).`),
      hugepages: z
        .object({
          pageSize: z.enum(HUGEPAGE_SIZES, { error: 'hugepages.pageSize must be 2Mi or 1Gi' }).describe('The huge page size backing guest RAM: 2Mi or 1Gi.'),
        })
        .optional()
        .describe('Back the guest RAM with pre-allocated huge pages of the node.'),
    })
    .describe('The guest memory.'),
  [
    {
      cel: "!has(self.hugepages) || !isQuantity(self.size) || quantity(self.size).isInteger() && quantity(self.size).asInteger() % quantity(self.hugepages.pageSize).asInteger() == 0",
      message: 'memory.size must be a multiple of hugepages.pageSize',
      fieldPath: '.size',
      violations: (m) => unless(m.hugepages === undefined || isMultiple(m.size, m.hugepages.pageSize), ['size']),
    },
  ],
);
export type Memory = z.infer<typeof Memory>;

function isMultiple(size: string, unit: string): boolean {
  const bytes = parseQuantity(size);
  const page = parseQuantity(unit);
  if (bytes === undefined || page === undefined) return true;
  return Number.isInteger(bytes) && bytes % page === 0;
}

export const DISK_BUSES = ['virtio', 'scsi', 'sata'] as const;
export type DiskBus = (typeof DISK_BUSES)[number];
export const DISK_FORMATS = ['qcow2', 'raw'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

export const StorageDomainDiskSource = withRules(
  z
    .object({
      name: dnsSubdomain('storageDomain.name').describe('The StorageDomain (cluster-scoped) that holds the disk image.'),
      size: byteSize('storageDomain.size', DISK_SIZE_MIN, DISK_SIZE_MAX).describe(`The virtual disk size (${DISK_SIZE_MIN}-${DISK_SIZE_MAX}).`),
      format: z.enum(DISK_FORMATS, { error: 'format must be qcow2 or raw' }).default('qcow2').describe('qcow2 (thin, supports a backing image, the default) or raw (preallocated).'),
      backingImage: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: 'backingImage must be an image name such as debian-12' })
        .optional()
        .describe('An image in the storage domain to clone from (copy-on-write for qcow2).'),
      image: dnsSubdomain('storageDomain.image')
        .optional()
        .describe('A VirtualMachineImage of the VM namespace, imported as qcow2 onto this domain, to clone from (copy-on-write for qcow2, a full copy for raw); the disk is made once the image is there.'),
    })
    .describe('A disk image KeyVirt creates and owns on a StorageDomain.'),
  [
    {
      cel: '!(has(self.backingImage) && has(self.image))',
      message: 'storageDomain names a backingImage or an image, not both',
      fieldPath: '.image',
      violations: (d) => unless(d.backingImage === undefined || d.image === undefined, ['image']),
    },
  ],
);
export type StorageDomainDiskSource = z.infer<typeof StorageDomainDiskSource>;

export const PersistentVolumeClaimDiskSource = z
  .object({
    claimName: dnsSubdomain('persistentVolumeClaim.claimName').describe('An existing PersistentVolumeClaim in the VM namespace (ReadWriteMany for live migration).'),
  })
  .describe('An existing PersistentVolumeClaim used as the disk.');
export type PersistentVolumeClaimDiskSource = z.infer<typeof PersistentVolumeClaimDiskSource>;

export const Disk = withRules(
  z
    .object({
      name: dnsLabel('disk name').describe('The disk name, unique within the VM.'),
      bootOrder: int32(1, 64).optional().describe('The boot order, 1 first; the boot disks must be numbered 1, 2, 3… without gaps.'),
      bus: z.enum(DISK_BUSES, { error: 'bus must be virtio, scsi or sata' }).default('virtio').describe('The bus the guest sees the disk on: virtio (the default), scsi or sata.'),
      readOnly: z.boolean().default(false).describe('Attach the disk read-only.'),
      storageDomain: StorageDomainDiskSource.optional(),
      persistentVolumeClaim: PersistentVolumeClaimDiskSource.optional(),
    })
    .describe('A virtual disk; exactly one source (storageDomain or persistentVolumeClaim).'),
  [
    {
      cel: '[has(self.storageDomain), has(self.persistentVolumeClaim)].filter(x, x).size() == 1',
      message: 'a disk needs exactly one source: storageDomain or persistentVolumeClaim',
      violations: (d) => unless([d.storageDomain, d.persistentVolumeClaim].filter((s) => s !== undefined).length === 1),
    },
  ],
);
export type Disk = z.infer<typeof Disk>;

export const Disks = withRules(
  z
    .array(Disk)
    .max(32, { error: 'a VM may have at most 32 disks' })
    .default([])
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
    .describe('The virtual disks (at most 32).'),
  [
    {
      cel: 'self.all(d, self.exists_one(x, x.name == d.name))',
      message: 'disk names must be unique',
      violations: (ds) => duplicatePaths(ds, (d) => d.name, 'name'),
    },
    {
      cel: 'self.all(d, !has(d.bootOrder) || self.exists_one(x, has(x.bootOrder) && x.bootOrder == d.bootOrder))',
      message: 'two disks have the same bootOrder',
      violations: (ds) => duplicatePaths(ds, (d) => d.bootOrder, 'bootOrder'),
    },
    {
      cel: 'self.all(d, !has(d.bootOrder) || d.bootOrder <= self.filter(x, has(x.bootOrder)).size())',
      message: 'bootOrder must number the boot disks 1, 2, 3… without gaps',
      violations: (ds) => bootOrderGaps(ds),
    },
    {
      cel: `self.filter(d, d.bus == 'sata').size() <= ${MAX_SATA_DISKS}`,
      message: `at most ${MAX_SATA_DISKS} disks can use the sata bus (one AHCI controller)`,
      violations: (ds) => ds.flatMap((d, i): [number, string][] => (d.bus === 'sata' ? [[i, 'bus']] : [])).slice(MAX_SATA_DISKS),
    },
  ],
);

function bootOrderGaps(disks: readonly Disk[]): [number, string][] {
  const booted = disks.filter((d) => d.bootOrder !== undefined).length;
  return disks.flatMap((d, i): [number, string][] => (d.bootOrder !== undefined && d.bootOrder > booted ? [[i, 'bootOrder']] : []));
}

export const INTERFACE_BINDINGS = ['masquerade', 'bridge'] as const;
export type InterfaceBinding = (typeof INTERFACE_BINDINGS)[number];
export const INTERFACE_MODELS = ['virtio', 'e1000', 'e1000e', 'rtl8139'] as const;
export type InterfaceModel = (typeof INTERFACE_MODELS)[number];
export const PORT_PROTOCOLS = ['TCP', 'UDP'] as const;
export type PortProtocol = (typeof PORT_PROTOCOLS)[number];

export const MAC_ADDRESS_PATTERN = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

/** The launcher's own ports in its pod (its API, its ephemeral range): never forwarded to the guest. */
export const LAUNCHER_RESERVED_PORTS = { api: 8443, ephemeralFirst: 49152, ephemeralLast: 49215 } as const;

export const Port = withRules(
  z
    .object({
      name: z.string().max(15).optional().describe('An optional port name (IANA service name).'),
      port: int32(1, 65535).describe('The port number (1-65535; not 8443 nor 49152-49215, the launcher\'s own).'),
      protocol: z.enum(PORT_PROTOCOLS).default('TCP').describe('TCP (the default) or UDP.'),
    })
    .describe('A port forwarded from the launcher pod to the guest.'),
  [
    {
      cel: `self.port != ${LAUNCHER_RESERVED_PORTS.api} && (self.port < ${LAUNCHER_RESERVED_PORTS.ephemeralFirst} || self.port > ${LAUNCHER_RESERVED_PORTS.ephemeralLast})`,
      message: `port ${LAUNCHER_RESERVED_PORTS.api} and ports ${LAUNCHER_RESERVED_PORTS.ephemeralFirst}-${LAUNCHER_RESERVED_PORTS.ephemeralLast} are the launcher's own`,
      fieldPath: '.port',
      violations: (p) => unless(p.port !== LAUNCHER_RESERVED_PORTS.api && (p.port < LAUNCHER_RESERVED_PORTS.ephemeralFirst || p.port > LAUNCHER_RESERVED_PORTS.ephemeralLast), ['port']),
    },
  ],
);
export type Port = z.infer<typeof Port>;

const MacAddress = withRules(
  z.string().max(17).regex(MAC_ADDRESS_PATTERN, { error: 'macAddress must look like 52:54:00:12:34:56' }),
  [
    {
      cel: "!self.matches('^[0-9A-Fa-f]{2}') || self.matches('^.[02468aceACE]')",
      message: 'macAddress must be a unicast address (the first octet must be even)',
      violations: (mac) => unless(!/^[0-9A-Fa-f]{2}/.test(mac) || /^.[02468aceACE]/.test(mac)),
    },
    {
      cel: "!self.matches('^00(:00){5}$')",
      message: 'macAddress must not be 00:00:00:00:00:00',
      violations: (mac) => unless(!/^00(:00){5}$/.test(mac)),
    },
  ],
);

export const Interface = withRules(
  z
    .object({
      name: dnsLabel('interface name').describe('The interface name, unique within the VM.'),
      binding: z
        .enum(INTERFACE_BINDINGS, { error: 'binding must be masquerade or bridge' })
        .default('masquerade')
        .describe('How the guest NIC connects to the pod network: masquerade (NAT behind the pod IP, the default; migratable) or bridge (the guest takes the pod IP).'),
      macAddress: MacAddress.optional().describe('A unicast MAC address such as 52:54:00:12:34:56; generated and kept stable when absent.'),
      model: z.enum(INTERFACE_MODELS).default('virtio').describe('The emulated NIC model: virtio (the default), e1000, e1000e or rtl8139.'),
      ports: z.array(Port).max(64).optional().describe('Ports forwarded to the guest (masquerade only); all ports when absent.'),
    })
    .describe('A network interface on the pod network.'),
  [
    {
      cel: "self.binding == 'masquerade' || !has(self.ports)",
      message: 'ports can only be set on a masquerade interface',
      fieldPath: '.ports',
      violations: (i) => unless(i.binding === 'masquerade' || i.ports === undefined, ['ports']),
    },
  ],
);
export type Interface = z.infer<typeof Interface>;

export const Interfaces = withRules(
  z
    .array(Interface)
    .max(16, { error: 'a VM may have at most 16 interfaces' })
    .default([])
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
    .describe('The network interfaces (at most 16).'),
  [
    {
      cel: 'self.all(i, self.exists_one(x, x.name == i.name))',
      message: 'interface names must be unique',
      violations: (is) => duplicatePaths(is, (i) => i.name, 'name'),
    },
    {
      cel: 'self.all(i, !has(i.macAddress) || self.exists_one(x, has(x.macAddress) && x.macAddress.lowerAscii() == i.macAddress.lowerAscii()))',
      message: 'two interfaces have the same macAddress',
      violations: (is) => duplicatePaths(is, (i) => i.macAddress?.toLowerCase(), 'macAddress'),
    },
    {
      cel: "self.filter(i, i.binding == 'masquerade').size() <= 1",
      message: 'only one interface can use the masquerade binding',
      violations: (is) => is.flatMap((i, index): [number, string][] => (i.binding === 'masquerade' ? [[index, 'binding']] : [])).slice(1),
    },
  ],
);

export const HostDevice = z
  .object({
    name: dnsLabel('host device name').describe('The device name, unique within the VM.'),
    resourceName: z
      .string()
      .max(253)
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, {
        error: 'resourceName must be an extended resource name such as keyvirt.io/pci-10de-1eb8',
      })
      .describe('The extended resource a device plugin advertises for the PCI device, e.g. keyvirt.io/pci-10de-1eb8; the device is passed through with VFIO.'),
  })
  .describe('A host PCI device passed through to the guest with VFIO.');
export type HostDevice = z.infer<typeof HostDevice>;

export const HostDevices = withRules(
  z
    .array(HostDevice)
    .max(16, { error: 'a VM may have at most 16 host devices' })
    .default([])
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
    .describe('Host PCI devices passed through (at most 16).'),
  [
    {
      cel: 'self.all(h, self.exists_one(x, x.name == h.name))',
      message: 'host device names must be unique',
      violations: (hs) => duplicatePaths(hs, (h) => h.name, 'name'),
    },
  ],
);

export const CloudInit = withRules(
  z
    .object({
      userData: z.string().max(65536).optional().describe('The NoCloud user-data document (e.g. starting with #cloud-config), at most 64 KiB.'),
      networkData: z.string().max(65536).optional().describe('The NoCloud network-config document (version 1 or 2), at most 64 KiB.'),
    })
    .describe('cloud-init data served to the guest on a NoCloud (cidata) disk.'),
  [
    {
      cel: 'has(self.userData) || has(self.networkData)',
      message: 'cloudInit needs userData or networkData',
      violations: (c) => unless(c.userData !== undefined || c.networkData !== undefined),
    },
  ],
);
export type CloudInit = z.infer<typeof CloudInit>;

export const Machine = z
  .object({
    type: z
      .string()
      .max(64)
      .regex(/^[a-z0-9][a-z0-9._-]*$/, { error: 'machine.type must be a QEMU machine type such as q35' })
      .default('q35')
      .describe('The QEMU machine type, e.g. q35 (the default) or pc-q35-7.2.'),
  })
  .describe('The emulated machine.');
export type Machine = z.infer<typeof Machine>;

export const VirtualMachineTemplate = z
  .object({
    cpu: Cpu.prefault({ model: CPU_MODEL_HOST_MODEL, sockets: 1, cores: 1, threads: 1, dedicatedCpuPlacement: false }),
    memory: Memory,
    disks: Disks,
    interfaces: Interfaces,
    hostDevices: HostDevices,
    cloudInit: CloudInit.optional(),
    guestAgent: z.boolean().default(true).describe('Expect the QEMU guest agent in the guest (the default): it reports IP addresses and OS info and allows graceful shutdown.'),
    machine: Machine.prefault({ type: 'q35' }),
    allowEmulation: z
      .boolean()
      .default(false)
      .describe('Let the VM run under software emulation (QEMU TCG) on nodes without usable KVM; the status reports the accelerator in use.'),
  })
  .describe('The virtual hardware of the VM.');
export type VirtualMachineTemplate = z.infer<typeof VirtualMachineTemplate>;

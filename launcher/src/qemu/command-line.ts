// The QEMU command line for one VM: a pure function of a resolved machine plan. Every
// path (disk files, sockets, seed image) is already resolved; nothing here touches the
// host. The plan is derived from the VirtualMachine template by machine-plan.ts.

export type Accelerator = 'kvm' | 'tcg';

/** `none`: O_DIRECT + native AIO (host page cache bypassed); `writeback`: host page cache + thread pool. */
export type DiskCacheMode = 'none' | 'writeback';

export interface PlannedDisk {
  name: string;
  path: string;
  format: 'qcow2' | 'raw';
  bus: 'virtio' | 'scsi' | 'sata';
  bootOrder?: number;
  readOnly: boolean;
  cache: DiskCacheMode;
  serial?: string;
}

export interface PortForward {
  protocol: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

export type NicModel = 'virtio' | 'e1000' | 'e1000e' | 'rtl8139';

export type PlannedInterface =
  | { name: string; model: NicModel; macAddress?: string; backend: 'user'; portForwards: PortForward[]; bootOrder?: number }
  | { name: string; model: NicModel; macAddress?: string; backend: 'tap'; tapDevice: string; bootOrder?: number };

const NIC_DEVICES: Record<NicModel, string> = { virtio: 'virtio-net-pci', e1000: 'e1000', e1000e: 'e1000e', rtl8139: 'rtl8139' };

/** q35's built-in AHCI controller has six ports, ide.0 … ide.5. */
export const SATA_PORTS = 6;

export interface PlannedHostDevice {
  name: string;
  /** PCI address `dddd:bb:ss.f`. */
  pciAddress: string;
}

export interface MachinePlan {
  /** `<namespace>_<name>`: shown in `ps` and as QEMU's guest name. */
  guestName: string;
  uuid?: string;
  machineType: string;
  accelerator: Accelerator;
  cpu: { model: string; sockets: number; cores: number; threads: number };
  memory: { sizeMiB: number; hugepages?: { path: string } };
  disks: PlannedDisk[];
  interfaces: PlannedInterface[];
  hostDevices: PlannedHostDevice[];
  /** NoCloud seed image (ISO 9660, label `cidata`). */
  cloudInitSeed?: string;
  sockets: { qmp: string; serial: string; guestAgent?: string; vnc?: string };
  /** Copy of everything the guest writes to its serial console. */
  serialLog?: string;
  /** `defer`: start as a live-migration target waiting for `migrate-incoming`. */
  incoming?: 'defer';
  /**
   * `-S`: the guest stays paused once the incoming migration completes, until the
   * launcher sends `cont` (a highly available VM's target resumes it only once it holds
   * the lease, ADR 0063).
   */
  startPaused?: boolean;
}

/** Maps the CPU model to `-cpu`: QEMU has no "host-model", see ADR 0041. */
export function cpuModelArg(model: string, accelerator: Accelerator): string {
  if (model === 'host-passthrough') return accelerator === 'kvm' ? 'host' : 'max';
  if (model === 'host-model') return accelerator === 'kvm' ? 'host,migratable=on' : 'max';
  return model;
}

/** QEMU's option-value escaping: a comma inside a value is doubled. */
function esc(value: string): string {
  return value.replaceAll(',', ',,');
}

function opts(parts: Record<string, string | number | boolean | undefined>): string {
  return Object.entries(parts)
    .filter((entry): entry is [string, string | number | boolean] => entry[1] !== undefined)
    .map(([k, v]) => {
      if (typeof v === 'boolean') return `${k}=${v ? 'on' : 'off'}`;
      return `${k}=${typeof v === 'number' ? String(v) : esc(v)}`;
    })
    .join(',');
}

/** Builds the complete QEMU argv (without the binary). */
export function buildQemuArgs(plan: MachinePlan): string[] {
  return [
    ...baseArgs(plan),
    ...cpuAndMemoryArgs(plan),
    // The firmware boots the disks in their boot order and nothing else: no -kernel (ADR 0087).
    '-boot',
    'strict=on',
    ...diskArgs(plan),
    ...nicArgs(plan),
    ...hostDeviceArgs(plan),
    ...consoleArgs(plan),
    ...(plan.incoming === undefined ? [] : ['-incoming', plan.incoming]),
    ...(plan.startPaused === true ? ['-S'] : []),
  ];
}

function baseArgs(plan: MachinePlan): string[] {
  const machine = opts({
    type: plan.machineType,
    'memory-backend': plan.memory.hugepages === undefined ? undefined : 'mem0',
  });
  const args = [
    '-name', opts({ guest: plan.guestName, 'debug-threads': true }),
    '-nodefaults', '-no-user-config',
    '-machine', machine,
    '-accel', plan.accelerator,
    '-msg', 'timestamp=on',
    '-rtc', 'base=utc',
    '-chardev', `socket,${opts({ id: 'qmp', path: plan.sockets.qmp, server: true, wait: false })}`,
    '-mon', 'chardev=qmp,mode=control',
  ];
  if (plan.uuid !== undefined) args.push('-uuid', plan.uuid);
  return args;
}

/**
 * Extra guest RAM under TCG, so that QEMU 7.2 migrates it without losing writes
 * (ADR 0053). QEMU syncs the migration dirty bitmap of a RAM block whose length is a
 * multiple of 64 pages (256 KiB) 64 bits at a time and, before QEMU 9.0 (upstream
 * commit 03bfc2188f), without re-arming TCG's TLB: stores through TLB entries already
 * marked dirty no longer set the bitmap, those pages are never sent again, and the
 * guest continues on the target with stale memory (kernel data: a panic and, with
 * panic=-1, a reboot). One 8 KiB granule more keeps the block off that path; QEMU then
 * syncs page by page and resets the TLB for every page it clears. KVM's dirty log is
 * kept by the kernel and needs no pad.
 */
export const TCG_MIGRATION_RAM_PAD_KIB = 8;

/** The `-m` value: the guest's memory, padded under TCG (not with hugepages, whose backend needs whole pages). */
export function memoryArg(memory: MachinePlan['memory'], accelerator: Accelerator): string {
  if (accelerator !== 'tcg' || memory.hugepages !== undefined) return `${memory.sizeMiB}M`;
  return `${memory.sizeMiB * 1024 + TCG_MIGRATION_RAM_PAD_KIB}K`;
}

function cpuAndMemoryArgs(plan: MachinePlan): string[] {
  const { cpu, memory } = plan;
  const vcpus = cpu.sockets * cpu.cores * cpu.threads;
  const args = [
    '-cpu', cpuModelArg(cpu.model, plan.accelerator),
    '-smp', opts({ cpus: vcpus, sockets: cpu.sockets, cores: cpu.cores, threads: cpu.threads }),
    '-m', memoryArg(memory, plan.accelerator),
  ];
  if (memory.hugepages !== undefined) {
    args.push(
      '-object',
      `memory-backend-file,${opts({ id: 'mem0', size: `${memory.sizeMiB}M`, 'mem-path': memory.hugepages.path, share: true, prealloc: true })}`,
    );
  }
  return args;
}

function blockdevArgs(id: string, disk: Pick<PlannedDisk, 'path' | 'format' | 'readOnly' | 'cache'>): string[] {
  const direct = disk.cache === 'none';
  const cache = { 'cache.direct': direct, 'cache.no-flush': false };
  return [
    '-blockdev',
    `driver=file,${opts({ 'node-name': `${id}-file`, filename: disk.path, aio: direct ? 'native' : 'threads', ...cache, 'read-only': disk.readOnly, 'auto-read-only': false, discard: 'unmap' })}`,
    '-blockdev',
    `driver=${disk.format},${opts({ 'node-name': id, file: `${id}-file`, ...cache, 'read-only': disk.readOnly, discard: 'unmap' })}`,
  ];
}

function diskArgs(plan: MachinePlan): string[] {
  const args: string[] = [];
  if (plan.disks.some((d) => d.bus === 'scsi')) args.push('-device', 'virtio-scsi-pci,id=scsi0');
  let sataPort = 0;
  for (const disk of plan.disks) {
    const id = `disk-${disk.name}`;
    args.push(...blockdevArgs(id, disk));
    const common = { drive: id, id: `ua-${disk.name}`, bootindex: disk.bootOrder, serial: disk.serial };
    if (disk.bus === 'scsi') {
      args.push('-device', `scsi-hd,${opts({ bus: 'scsi0.0', ...common })}`);
    } else if (disk.bus === 'sata') {
      args.push('-device', `ide-hd,${opts({ bus: `ide.${sataPort++}`, ...common })}`);
    } else {
      args.push('-device', `virtio-blk-pci,${opts(common)}`);
    }
  }
  if (plan.cloudInitSeed !== undefined) {
    args.push(...blockdevArgs('cloudinit', { path: plan.cloudInitSeed, format: 'raw', readOnly: true, cache: 'writeback' }));
    args.push('-device', 'virtio-blk-pci,drive=cloudinit,id=ua-cloudinit');
  }
  return args;
}

function hostfwd(fwd: PortForward): string {
  return `hostfwd=${fwd.protocol}:${fwd.hostAddress}:${fwd.hostPort}-:${fwd.guestPort}`;
}

function nicArgs(plan: MachinePlan): string[] {
  const args: string[] = [];
  for (const nic of plan.interfaces) {
    const id = `net-${nic.name}`;
    if (nic.backend === 'user') {
      args.push('-netdev', [`user,id=${esc(id)}`, ...nic.portForwards.map(hostfwd)].join(','));
    } else {
      args.push('-netdev', `tap,${opts({ id, ifname: nic.tapDevice, script: 'no', downscript: 'no' })}`);
    }
    args.push('-device', `${NIC_DEVICES[nic.model]},${opts({ netdev: id, id: `ua-${nic.name}`, mac: nic.macAddress, bootindex: nic.bootOrder })}`);
  }
  return args;
}

function hostDeviceArgs(plan: MachinePlan): string[] {
  return plan.hostDevices.flatMap((dev) => ['-device', `vfio-pci,${opts({ host: dev.pciAddress, id: `hostdev-${dev.name}` })}`]);
}

function consoleArgs(plan: MachinePlan): string[] {
  const serial = opts({ id: 'serial0', path: plan.sockets.serial, server: true, wait: false, logfile: plan.serialLog, logappend: plan.serialLog === undefined ? undefined : true });
  const args = ['-chardev', `socket,${serial}`, '-serial', 'chardev:serial0'];
  if (plan.sockets.guestAgent !== undefined) {
    args.push(
      '-chardev', `socket,${opts({ id: 'qga0', path: plan.sockets.guestAgent, server: true, wait: false })}`,
      '-device', 'virtio-serial-pci,id=virtio-serial0',
      '-device', 'virtserialport,bus=virtio-serial0.0,nr=1,chardev=qga0,id=channel-qga0,name=org.qemu.guest_agent.0',
    );
  }
  if (plan.sockets.vnc === undefined) {
    args.push('-display', 'none');
  } else {
    args.push('-device', 'VGA,id=video0', '-vnc', `unix:${plan.sockets.vnc}`);
  }
  return args;
}

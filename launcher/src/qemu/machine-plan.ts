// Turns the launcher configuration (the VM template plus what the operator resolved:
// disk paths, PCI addresses, tap devices, port forwards) into the machine plan the QEMU
// command line is built from. Pure: probing (accelerator, O_DIRECT) happens before.
import { parseQuantity } from '@keyvirt/crds';
import type { LauncherConfig } from '../api/config.ts';
import { POD_NETWORK_TAP } from '../api/pod-network.ts';
import type { Accelerator, DiskCacheMode, MachinePlan, PlannedDisk, PlannedInterface, PortForward } from './command-line.ts';
import { SATA_PORTS } from './command-line.ts';

export class MachinePlanError extends Error {
  override name = 'MachinePlanError';
}

export interface StatePaths {
  qmpSocket: string;
  serialSocket: string;
  guestAgentSocket: string;
  vncSocket: string;
  serialLog: string;
}

export interface PlanInputs {
  config: LauncherConfig;
  accelerator: Accelerator;
  paths: StatePaths;
  /** Cache mode per disk name, from probeDiskCacheMode. */
  diskCache: Readonly<Record<string, DiskCacheMode>>;
  cloudInitSeed?: string;
}

const MIB = 1024 * 1024;

export function memoryMiB(size: string): number {
  const bytes = parseQuantity(size);
  if (bytes === undefined || bytes <= 0) throw new MachinePlanError(`memory.size ${size} is not a valid quantity`);
  return Math.ceil(bytes / MIB);
}

function planDisks(inputs: PlanInputs): PlannedDisk[] {
  const { config } = inputs;
  const disks = config.template.disks.map((disk): PlannedDisk => {
    const resolved = config.disks[disk.name];
    if (resolved === undefined) throw new MachinePlanError(`disk ${disk.name} has no resolved image path in the launcher configuration`);
    const format = resolved.format ?? disk.storageDomain?.format ?? 'raw';
    return {
      name: disk.name,
      path: resolved.path,
      format,
      bus: disk.bus,
      bootOrder: disk.bootOrder,
      readOnly: disk.readOnly,
      cache: inputs.diskCache[disk.name] ?? 'none',
    };
  });
  if (disks.filter((d) => d.bus === 'sata').length > SATA_PORTS) {
    throw new MachinePlanError(`at most ${SATA_PORTS} disks can use the sata bus`);
  }
  return disks;
}

function planInterfaces(config: LauncherConfig): PlannedInterface[] {
  return config.template.interfaces.map((iface): PlannedInterface => {
    const resolved = config.interfaces[iface.name] ?? {};
    const common = { name: iface.name, model: iface.model, macAddress: iface.macAddress };
    if (resolved.podNetwork === true) return { ...common, backend: 'tap', tapDevice: POD_NETWORK_TAP };
    if (iface.binding === 'bridge') {
      if (resolved.tapDevice === undefined) throw new MachinePlanError(`interface ${iface.name} uses the bridge binding but the configuration names no tap device`);
      return { ...common, backend: 'tap', tapDevice: resolved.tapDevice };
    }
    const forwards: PortForward[] =
      resolved.portForwards ??
      (iface.ports ?? []).map((p) => ({
        protocol: p.protocol === 'UDP' ? 'udp' : 'tcp',
        hostAddress: '0.0.0.0',
        hostPort: p.port,
        guestPort: p.port,
      }));
    return { ...common, backend: 'user', portForwards: forwards };
  });
}

export function planMachine(inputs: PlanInputs): MachinePlan {
  const { config, paths } = inputs;
  const { template } = config;
  const hostDevices = template.hostDevices.map((dev) => {
    const pciAddress = config.hostDevices[dev.name];
    if (pciAddress === undefined) throw new MachinePlanError(`host device ${dev.name} has no PCI address in the launcher configuration`);
    return { name: dev.name, pciAddress };
  });
  const plan: MachinePlan = {
    guestName: `${config.vm.namespace}_${config.vm.name}`,
    uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(config.vm.uid) ? config.vm.uid : undefined,
    machineType: template.machine.type,
    accelerator: inputs.accelerator,
    cpu: { model: template.cpu.model, sockets: template.cpu.sockets, cores: template.cpu.cores, threads: template.cpu.threads },
    memory: {
      sizeMiB: memoryMiB(template.memory.size),
      hugepages: template.memory.hugepages === undefined ? undefined : { path: config.qemu.hugepagesPath },
    },
    disks: planDisks(inputs),
    interfaces: planInterfaces(config),
    hostDevices,
    cloudInitSeed: inputs.cloudInitSeed,
    sockets: {
      qmp: paths.qmpSocket,
      serial: paths.serialSocket,
      guestAgent: template.guestAgent ? paths.guestAgentSocket : undefined,
      vnc: config.qemu.vnc ? paths.vncSocket : undefined,
    },
    serialLog: paths.serialLog,
    incoming: config.mode === 'migration-target' ? 'defer' : undefined,
  };
  return plan;
}

// The node agent's /metrics (ADR 0069): the last reading of every launcher on this node
// as keyvirt_vmi_* series named as KubeVirt users know them (kubevirt_vmi_* → keyvirt_vmi_*),
// labelled namespace/name/node and drive, interface, vcpu or mountpoint where the
// figure is per device. Counters carry the launcher's absolute values; a launcher that
// restarts (a new QEMU) starts them at zero again, which Prometheus reads as a reset.
import { Counter, Gauge, Registry } from 'prom-client';
import type { VmMetrics } from '@keyvirt/launcher/api';
import type { LauncherTarget } from './launcher-pods.ts';
import type { ScrapeFailure } from './launcher-scrape.ts';

export interface LauncherReading {
  readonly target: LauncherTarget;
  readonly metrics?: VmMetrics | undefined;
  readonly failure?: ScrapeFailure | undefined;
}

type Labels = Record<string, string>;
type Sample = [Labels, number];

interface VmSeries {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  /** Labels besides namespace, name and node. */
  readonly labels: readonly string[];
  readonly samples: (m: VmMetrics) => Sample[];
}

/** Migration states in which QEMU is still moving the guest. */
const MIGRATING: ReadonlySet<string> = new Set(['setup', 'active', 'pre-switchover', 'device', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'wait-unplug']);

const one = (v: number | undefined): Sample[] => (v === undefined ? [] : [[{}, v]]);
const migrating = (m: VmMetrics, pick: (x: NonNullable<VmMetrics['migration']>) => number): Sample[] =>
  m.migration !== undefined && MIGRATING.has(m.migration.status) ? [[{}, pick(m.migration)]] : [];

/** Every per-VM series the node agent exports, with where its value comes from. */
export const VM_SERIES: readonly VmSeries[] = [
  { name: 'keyvirt_vmi_vcpu_seconds_total', type: 'counter', labels: ['vcpu'], help: 'Host CPU time of each vCPU thread (schedstat), seconds. Under TCG one thread may run every vCPU.', samples: (m) => m.vcpus.map((c) => [{ vcpu: String(c.index) }, c.seconds]) },
  { name: 'keyvirt_vmi_memory_domain_bytes', type: 'gauge', labels: [], help: 'Guest RAM as configured, bytes.', samples: (m) => one(m.memory.guestBytes) },
  { name: 'keyvirt_vmi_memory_resident_bytes', type: 'gauge', labels: [], help: 'Resident set of the QEMU process (guest RAM touched + QEMU), bytes.', samples: (m) => one(m.memory.qemuResidentBytes) },
  { name: 'keyvirt_vmi_memory_available_bytes', type: 'gauge', labels: [], help: 'Memory the guest reports available to its programs (balloon statistics; guest-reported), bytes.', samples: (m) => one(m.memory.guestAvailableBytes) },
  { name: 'keyvirt_vmi_memory_unused_bytes', type: 'gauge', labels: [], help: 'Memory the guest reports unused (balloon statistics; guest-reported), bytes.', samples: (m) => one(m.memory.guestFreeBytes) },
  { name: 'keyvirt_vmi_memory_balloon_bytes', type: 'gauge', labels: [], help: 'Current size of the memory balloon (the guest RAM QEMU lets the guest use), bytes.', samples: (m) => one(m.memory.balloonBytes) },
  { name: 'keyvirt_vmi_launcher_overhead_bytes', type: 'gauge', labels: [], help: 'Launcher process RSS + QEMU RSS outside the guest RAM mapping, bytes.', samples: (m) => one(m.memory.overheadBytes) },
  { name: 'keyvirt_vmi_launcher_resident_bytes', type: 'gauge', labels: [], help: 'Resident set of the launcher process, bytes.', samples: (m) => one(m.memory.launcherResidentBytes) },
  { name: 'keyvirt_vmi_storage_read_traffic_bytes_total', type: 'counter', labels: ['drive'], help: 'Bytes read from each disk.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.readBytes]) },
  { name: 'keyvirt_vmi_storage_write_traffic_bytes_total', type: 'counter', labels: ['drive'], help: 'Bytes written to each disk.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.writeBytes]) },
  { name: 'keyvirt_vmi_storage_iops_read_total', type: 'counter', labels: ['drive'], help: 'Read requests to each disk.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.readOps]) },
  { name: 'keyvirt_vmi_storage_iops_write_total', type: 'counter', labels: ['drive'], help: 'Write requests to each disk.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.writeOps]) },
  { name: 'keyvirt_vmi_storage_flush_requests_total', type: 'counter', labels: ['drive'], help: 'Flush requests to each disk.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.flushOps]) },
  { name: 'keyvirt_vmi_storage_read_times_seconds_total', type: 'counter', labels: ['drive'], help: 'Time spent in reads of each disk, seconds.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.readTimeSeconds]) },
  { name: 'keyvirt_vmi_storage_write_times_seconds_total', type: 'counter', labels: ['drive'], help: 'Time spent in writes to each disk, seconds.', samples: (m) => m.disks.map((d) => [{ drive: d.name }, d.writeTimeSeconds]) },
  { name: 'keyvirt_vmi_network_receive_bytes_total', type: 'counter', labels: ['interface'], help: 'Bytes received by each interface (guest agent; guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.receiveBytes]) },
  { name: 'keyvirt_vmi_network_transmit_bytes_total', type: 'counter', labels: ['interface'], help: 'Bytes sent by each interface (guest agent; guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.transmitBytes]) },
  { name: 'keyvirt_vmi_network_receive_packets_total', type: 'counter', labels: ['interface'], help: 'Packets received by each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.receivePackets]) },
  { name: 'keyvirt_vmi_network_transmit_packets_total', type: 'counter', labels: ['interface'], help: 'Packets sent by each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.transmitPackets]) },
  { name: 'keyvirt_vmi_network_receive_errors_total', type: 'counter', labels: ['interface'], help: 'Receive errors of each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.receiveErrors]) },
  { name: 'keyvirt_vmi_network_transmit_errors_total', type: 'counter', labels: ['interface'], help: 'Transmit errors of each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.transmitErrors]) },
  { name: 'keyvirt_vmi_network_receive_packets_dropped_total', type: 'counter', labels: ['interface'], help: 'Received packets dropped by each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.receiveDropped]) },
  { name: 'keyvirt_vmi_network_transmit_packets_dropped_total', type: 'counter', labels: ['interface'], help: 'Sent packets dropped by each interface (guest-reported).', samples: (m) => m.interfaces.map((i) => [{ interface: i.name }, i.transmitDropped]) },
  { name: 'keyvirt_vmi_filesystem_capacity_bytes', type: 'gauge', labels: ['mountpoint', 'type'], help: 'Size of each guest file system (guest agent; guest-reported).', samples: (m) => m.filesystems.map((f) => [{ mountpoint: f.mountpoint, type: f.type }, f.totalBytes]) },
  { name: 'keyvirt_vmi_filesystem_used_bytes', type: 'gauge', labels: ['mountpoint', 'type'], help: 'Used bytes of each guest file system (guest-reported).', samples: (m) => m.filesystems.map((f) => [{ mountpoint: f.mountpoint, type: f.type }, f.usedBytes]) },
  { name: 'keyvirt_vmi_migration_data_remaining_bytes', type: 'gauge', labels: [], help: 'Guest RAM still to send by the running outgoing migration, bytes.', samples: (m) => migrating(m, (x) => x.remainingBytes) },
  { name: 'keyvirt_vmi_migration_data_processed_bytes', type: 'gauge', labels: [], help: 'Guest RAM sent so far by the running outgoing migration, bytes.', samples: (m) => migrating(m, (x) => x.transferredBytes) },
  { name: 'keyvirt_vmi_migration_data_total_bytes', type: 'gauge', labels: [], help: 'Guest RAM the running outgoing migration has to move, bytes.', samples: (m) => migrating(m, (x) => x.totalBytes) },
  { name: 'keyvirt_vmi_migration_dirty_memory_rate_bytes', type: 'gauge', labels: [], help: 'Rate at which the guest dirties memory during the running migration, bytes per second.', samples: (m) => migrating(m, (x) => x.dirtyRateBytesPerSecond) },
  { name: 'keyvirt_vmi_migration_failed', type: 'gauge', labels: [], help: '1 when the last outgoing migration of the running QEMU failed (the VM stayed on its source), until another migration starts.', samples: (m) => (m.migration?.status === 'failed' ? [[{}, 1]] : []) },
  { name: 'keyvirt_vmi_migration_iterations', type: 'gauge', labels: [], help: 'Memory passes of the running outgoing migration.', samples: (m) => migrating(m, (x) => x.iterations) },
];

export class VmMetricsExposition {
  readonly registry = new Registry();
  readonly #node: string;
  #readings: readonly LauncherReading[] = [];
  readonly #scrapes: Counter<'result'>;

  /** `uncaughtErrors`: the errors nobody caught that the agent's safety net survived (ADR 0139). */
  constructor(node: string, agent: { uncaughtErrors?: () => number } = {}) {
    this.#node = node;
    const registers = [this.registry];
    const readings = (): readonly LauncherReading[] => this.#readings;
    const base = (r: LauncherReading): Labels => ({ namespace: r.target.namespace, name: r.target.name, node });
    for (const series of VM_SERIES) {
      const labelNames = ['namespace', 'name', 'node', ...series.labels];
      const collect = function (this: Counter | Gauge): void {
        this.reset();
        for (const r of readings()) {
          if (r.metrics === undefined) continue;
          for (const [labels, value] of series.samples(r.metrics)) {
            if (this instanceof Counter) this.inc({ ...base(r), ...labels }, value);
            else this.set({ ...base(r), ...labels }, value);
          }
        }
      };
      if (series.type === 'counter') new Counter({ name: series.name, help: series.help, labelNames, registers, collect });
      else new Gauge({ name: series.name, help: series.help, labelNames, registers, collect });
    }
    new Gauge({
      name: 'keyvirt_vmi_launcher_up',
      help: '1 when the node agent read the launcher of a running VM at its last pass, 0 when the launcher did not answer (labels: the failure reason).',
      labelNames: ['namespace', 'name', 'node', 'reason'],
      registers,
      collect(): void {
        this.reset();
        for (const r of readings()) this.set({ ...base(r), reason: r.failure ?? '' }, r.metrics === undefined ? 0 : 1);
      },
    });
    new Gauge({
      name: 'keyvirt_vmi_phase_count',
      help: 'Running launchers on this node per launcher phase (Running, Paused, Migrating …; Unknown when the launcher did not answer).',
      labelNames: ['node', 'phase'],
      registers,
      collect(): void {
        this.reset();
        for (const r of readings()) this.inc({ node, phase: r.metrics?.phase ?? 'Unknown' });
      },
    });
    const uncaughtErrors = agent.uncaughtErrors ?? ((): number => 0);
    new Counter({
      name: 'keyvirt_node_agent_uncaught_errors_total',
      help: 'Errors nobody caught that the node agent logged and survived while it ran held VMs (a bug: its log has the error; ADR 0139).',
      labelNames: ['node'],
      registers,
      collect(): void {
        this.reset();
        this.inc({ node }, uncaughtErrors());
      },
    });
    this.#scrapes = new Counter({
      name: 'keyvirt_node_agent_launcher_scrapes_total',
      help: 'Launcher metrics reads by the node agent, per result (ok or the failure reason).',
      labelNames: ['result'],
      registers,
    });
  }

  get node(): string {
    return this.#node;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** Replaces every launcher's reading with those of the last pass. */
  update(readings: readonly LauncherReading[]): void {
    this.#readings = readings;
    for (const r of readings) this.#scrapes.inc({ result: r.failure ?? 'ok' });
  }
}

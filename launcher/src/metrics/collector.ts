// Collects one VM's metrics on demand (GET /v1/metrics, ADR 0069): QEMU's block, vCPU
// thread, balloon and migration figures over QMP, the guest agent's file systems and
// interface counters, and /proc for QEMU's and the launcher's resident memory.
// Cheap and bounded whatever the rate of scrapes: one collection at a time, an answer
// reused for `minIntervalMs`, every QMP command under a short timeout; the guest agent
// (a hostile guest may answer slowly or not at all) is read in the background at most
// every `agentIntervalMs` and a scrape never waits for it.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { VmMetrics } from '../api/vm-metrics.ts';
import { VM_METRICS_LIMITS } from '../api/vm-metrics.ts';
import { QueryMigrateSchema } from '../migration/progress.ts';
import { QmpExecuteError } from '../qmp/errors.ts';
import { guestRamResidentBytes, residentBytes, threadCpuSeconds } from './proc-readings.ts';
import {
  BalloonGuestStatsSchema,
  diskMetrics,
  filesystemMetrics,
  GuestFsUsageSchema,
  GuestInterfaceStatsSchema,
  interfaceMetrics,
  migrationMetrics,
  balloonGuestMemory,
  QueryBalloonSchema,
  QueryBlockstatsSchema,
  QueryCpusFastSchema,
  clampCount,
} from './qmp-readings.ts';
import type { FilesystemMetrics, InterfaceMetrics } from '../api/vm-metrics.ts';

/** The QMP session as the collector uses it. */
export interface MetricsQmp {
  execute<S extends z.ZodType>(command: string, args: Readonly<Record<string, unknown>> | undefined, schema: S, options?: { timeoutMs?: number }): Promise<z.infer<S>>;
}

/** The guest-agent session as the collector uses it. */
export interface MetricsAgent {
  execute<S extends z.ZodType>(command: string, args: Record<string, unknown> | undefined, schema: S, timeoutMs?: number): Promise<z.infer<S>>;
}

/** The supervised VM as the collector sees it. */
export interface MetricsVm {
  readonly phase: string;
  readonly qmp: MetricsQmp | undefined;
  readonly agentClient: MetricsAgent | undefined;
  readonly qemuPid: number | undefined;
}

export interface CollectorOptions {
  readonly vm: MetricsVm;
  readonly identity: VmMetrics['vm'];
  readonly guestBytes: number;
  /** Template interfaces (name, MAC) to name the guest's interfaces. */
  readonly interfaces: readonly { name: string; macAddress?: string | undefined }[];
  readonly log: Logger;
  readonly procRoot?: string;
  readonly minIntervalMs?: number;
  readonly agentIntervalMs?: number;
  readonly qmpTimeoutMs?: number;
  readonly agentTimeoutMs?: number;
  readonly now?: () => number;
}

type BalloonFigures = Partial<Pick<VmMetrics['memory'], 'balloonBytes' | 'guestAvailableBytes' | 'guestFreeBytes'>>;

/** Where a balloon device with id `balloon0` sits in QOM. */
const BALLOON_QOM_PATH = '/machine/peripheral/balloon0';
/** Phases in which the guest's vCPUs run and its agent can answer. */
const AGENT_PHASES: ReadonlySet<string> = new Set(['Running']);
/** No guest file system is larger than this (1 PiB): a bound for guest-reported sizes. */
const MAX_FILESYSTEM_BYTES = 2 ** 50;

export class VmMetricsCollector {
  readonly #o: CollectorOptions;
  readonly #now: () => number;
  #last: { at: number; metrics: VmMetrics } | undefined;
  #inFlight: Promise<VmMetrics> | undefined;
  #agentData: { interfaces: InterfaceMetrics[]; filesystems: FilesystemMetrics[] } = { interfaces: [], filesystems: [] };
  #agentReadAt = Number.NEGATIVE_INFINITY;
  #agentReading = false;
  /** Set once QEMU said the VM has no balloon: not asked again. */
  #noBalloon = false;

  constructor(options: CollectorOptions) {
    this.#o = options;
    this.#now = options.now ?? ((): number => Date.now());
  }

  /** The VM's metrics: a fresh collection, or the last one when it is younger than `minIntervalMs`. */
  collect(): Promise<VmMetrics> {
    const last = this.#last;
    if (last !== undefined && this.#now() - last.at < (this.#o.minIntervalMs ?? 1000)) return Promise.resolve(last.metrics);
    if (this.#inFlight !== undefined) return this.#inFlight;
    const run = this.#collect().finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = run;
    return run;
  }

  async #collect(): Promise<VmMetrics> {
    const vm = this.#o.vm;
    const procRoot = this.#o.procRoot ?? '/proc';
    const phase = vm.phase;
    const qmp = vm.qmp;
    const pid = vm.qemuPid;
    this.#refreshAgent(phase);
    const [vcpus, disks, migration, balloon, qemuRss, guestRss, launcherRss] = await Promise.all([
      qmp === undefined || pid === undefined ? [] : this.#vcpus(qmp, procRoot, pid),
      qmp === undefined ? [] : this.#qmp(qmp, 'query-blockstats', QueryBlockstatsSchema).then((s) => (s === undefined ? [] : diskMetrics(s))),
      qmp === undefined ? undefined : this.#qmp(qmp, 'query-migrate', QueryMigrateSchema).then((m) => (m === undefined ? undefined : migrationMetrics(m))),
      qmp === undefined ? undefined : this.#balloon(qmp),
      pid === undefined ? undefined : residentBytes(procRoot, pid).catch(() => undefined),
      pid === undefined ? undefined : guestRamResidentBytes(procRoot, pid, this.#o.guestBytes).catch(() => undefined),
      residentBytes(procRoot, 'self').catch(() => clampCount(process.memoryUsage().rss)),
    ]);
    const overheadBytes = qemuRss === undefined || guestRss === undefined ? undefined : launcherRss + Math.max(0, qemuRss - guestRss);
    const metrics: VmMetrics = {
      vm: this.#o.identity,
      phase,
      collectedAt: new Date(this.#now()).toISOString(),
      vcpus,
      memory: {
        guestBytes: this.#o.guestBytes,
        launcherResidentBytes: launcherRss,
        ...(qemuRss === undefined ? {} : { qemuResidentBytes: qemuRss }),
        ...(overheadBytes === undefined ? {} : { overheadBytes }),
        ...balloon,
      },
      disks,
      interfaces: this.#agentData.interfaces,
      filesystems: this.#agentData.filesystems,
      ...(migration === undefined ? {} : { migration }),
    };
    this.#last = { at: this.#now(), metrics };
    return metrics;
  }

  /** A QMP answer, or undefined when QEMU refused or did not answer in time (logged at debug). */
  async #qmp<S extends z.ZodType>(qmp: MetricsQmp, command: string, schema: S, args?: Record<string, unknown>): Promise<z.infer<S> | undefined> {
    try {
      return await qmp.execute(command, args, schema, { timeoutMs: this.#o.qmpTimeoutMs ?? 2000 });
    } catch (err) {
      if (command === 'query-balloon' && err instanceof QmpExecuteError && err.errorClass === 'DeviceNotActive') {
        this.#noBalloon = true;
        return undefined;
      }
      this.#o.log.debug({ err, command }, 'metrics: qmp query failed');
      return undefined;
    }
  }

  async #vcpus(qmp: MetricsQmp, procRoot: string, pid: number): Promise<VmMetrics['vcpus']> {
    const cpus = await this.#qmp(qmp, 'query-cpus-fast', QueryCpusFastSchema);
    if (cpus === undefined) return [];
    const out: VmMetrics['vcpus'] = [];
    const threads = new Set<number>();
    for (const cpu of cpus.slice(0, VM_METRICS_LIMITS.vcpus)) {
      // With one thread for all vCPUs (TCG without MTTCG), every vCPU names it: count it once.
      if (threads.has(cpu['thread-id'])) continue;
      threads.add(cpu['thread-id']);
      const seconds = await threadCpuSeconds(procRoot, pid, cpu['thread-id']).catch(() => undefined);
      if (seconds !== undefined) out.push({ index: cpu['cpu-index'], seconds });
    }
    return out;
  }

  async #balloon(qmp: MetricsQmp): Promise<BalloonFigures> {
    if (this.#noBalloon) return {};
    const balloon = await this.#qmp(qmp, 'query-balloon', QueryBalloonSchema);
    if (balloon === undefined) return {};
    const guestBytes = this.#o.guestBytes;
    const stats = await this.#qmp(qmp, 'qom-get', BalloonGuestStatsSchema, { path: BALLOON_QOM_PATH, property: 'guest-stats' });
    return { balloonBytes: clampCount(balloon.actual, guestBytes), ...(stats === undefined ? {} : balloonGuestMemory(stats, guestBytes)) };
  }

  /** Starts a background read of the guest agent when the last one is older than `agentIntervalMs`. */
  #refreshAgent(phase: string): void {
    const agent = this.#o.vm.agentClient;
    if (agent === undefined || !AGENT_PHASES.has(phase)) return;
    if (this.#agentReading || this.#now() - this.#agentReadAt < (this.#o.agentIntervalMs ?? 15_000)) return;
    this.#agentReading = true;
    this.#agentReadAt = this.#now();
    const timeoutMs = this.#o.agentTimeoutMs ?? 2000;
    void (async (): Promise<void> => {
      try {
        const ifaces = await agent.execute('guest-network-get-interfaces', undefined, GuestInterfaceStatsSchema, timeoutMs).catch(() => undefined);
        const fs = await agent.execute('guest-get-fsinfo', undefined, GuestFsUsageSchema, timeoutMs).catch(() => undefined);
        this.#agentData = {
          interfaces: ifaces === undefined ? this.#agentData.interfaces : interfaceMetrics(ifaces, this.#o.interfaces),
          filesystems: fs === undefined ? this.#agentData.filesystems : filesystemMetrics(fs, MAX_FILESYSTEM_BYTES),
        };
      } finally {
        this.#agentReading = false;
      }
    })();
  }
}

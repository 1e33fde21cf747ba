// Prepares and starts one VM from a validated configuration: accelerator, state
// directory, disk cache modes, cloud-init seed, the QEMU command line, the supervisor
// and the HTTP API. main.ts owns the process (signals, exit codes); this owns the VM.
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { LauncherConfig } from './api/config.ts';
import type { Info } from './api/status.ts';
import { LAUNCHER_API_VERSIONS } from './api/status.ts';
import { buildNoCloudSeed, noCloudSeedPath } from './cloud-init/seed.ts';
import { bearerTokenCheck } from './http/auth.ts';
import { registerV1Routes } from './http/routes-v1.ts';
import { registerConsoleStreams } from './http/console-streams.ts';
import { registerGuestInfoRoute } from './http/guest-info-route.ts';
import { ApiServer } from './http/server.ts';
import { chooseAccelerator } from './qemu/accelerator.ts';
import type { AcceleratorChoice, AcceleratorProbe } from './qemu/accelerator.ts';
import { buildQemuArgs } from './qemu/command-line.ts';
import type { DiskCacheMode } from './qemu/command-line.ts';
import { probeDiskCacheMode } from './qemu/disk-cache.ts';
import { planMachine } from './qemu/machine-plan.ts';
import { prepareTap, removeTap } from './network/tap.ts';
import { startConfiguredPodNetwork } from './network/pod-network.ts';
import type { StatePaths } from './qemu/machine-plan.ts';
import { VmSupervisor } from './supervisor/supervisor.ts';
import { PodHost } from './pod/pod-host.ts';
import { insideView, outsideView, type LaunchView, type OutsidePod } from './pod/outside-view.ts';
import { SerialLogRotator } from './supervisor/serial-log.ts';
import { attachMigration } from './migration/attach.ts';
import { LauncherLease } from './lease/launcher-lease.ts';
import type { MigrationController } from './migration/controller.ts';
import { launcherMetrics } from './metrics/launcher-metrics.ts';
import packageJson from '../package.json' with { type: 'json' };

export const LAUNCHER_VERSION: string = packageJson.version;

export interface Launch {
  supervisor: VmSupervisor;
  server: ApiServer;
  /** Live migration of this VM (outgoing and, in a target launcher, incoming). */
  migration: MigrationController;
  /** An HA VM's lease (ADR 0063). */
  lease: LauncherLease | undefined;
  address: { address: string; port: number };
  accelerator: AcceleratorChoice;
  info: () => Info;
}

export interface LaunchOptions {
  config: LauncherConfig;
  token: string;
  logger: Logger;
  acceleratorProbe?: AcceleratorProbe;
  /** The pod holding QEMU when the configuration says `qemu.host: pod` (made here when absent). */
  podHost?: PodHost;
  /**
   * The pod, when this launch runs outside it (a node agent, ADRs 0130-0132): the
   * configuration's paths are the pod's, reached through its root; the API listens in
   * its network namespace.
   */
  outside?: OutsidePod;
  /**
   * QEMU already runs in the pod, started by an earlier launcher outside it (ADR 0135):
   * attach to it over its sockets, leaving the state directory, the seed and the guest as
   * they are.
   */
  adopt?: boolean;
  /** The metrics token's file, as this process reads it (beside the token file by default). */
  metricsTokenFile?: string;
  /**
   * The pod's identity for its lease (its UID and node) when this process is not the
   * pod's own (a node agent, ADR 0136); the process's environment otherwise.
   */
  leaseEnv?: NodeJS.ProcessEnv;
  /** Aborts a wait before QEMU starts (the lease) when the VM is to stop; outside the pod its signals are not the VM's. */
  stopSignal?: AbortSignal;
}

export function statePaths(stateDir: string): StatePaths {
  return {
    qmpSocket: path.join(stateDir, 'qmp.sock'),
    serialSocket: path.join(stateDir, 'serial.sock'),
    guestAgentSocket: path.join(stateDir, 'qga.sock'),
    vncSocket: path.join(stateDir, 'vnc.sock'),
    serialLog: path.join(stateDir, 'serial.log'),
  };
}

/** Creates the tap devices the configuration asks for; resolves with a cleanup for those created here. */
async function prepareTaps(config: LauncherConfig, logger: Logger): Promise<() => Promise<void>> {
  const created: string[] = [];
  for (const iface of config.template.interfaces) {
    const resolved = config.interfaces[iface.name];
    if (iface.binding !== 'bridge' || resolved?.bridge === undefined || resolved.tapDevice === undefined) continue;
    if (await prepareTap({ name: resolved.tapDevice, bridge: resolved.bridge })) created.push(resolved.tapDevice);
    logger.info({ tap: resolved.tapDevice, bridge: resolved.bridge }, 'tap device ready');
  }
  return async () => {
    for (const tap of created) await removeTap(tap);
  };
}

/** The cache mode of every configured disk (O_DIRECT where its file system allows it). */
export async function probeDisks(config: LauncherConfig, probe: (path: string) => Promise<DiskCacheMode> = probeDiskCacheMode): Promise<Record<string, DiskCacheMode>> {
  const modes: Record<string, DiskCacheMode> = {};
  for (const [name, disk] of Object.entries(config.disks)) modes[name] = await probe(disk.path);
  return modes;
}

/** A takeover moves these to new inodes: the configured list, else every writable disk on a storage domain. */
export function disksToFence(config: LauncherConfig): string[] {
  const names =
    config.lease?.fenceDisks ?? config.template.disks.filter((d) => !d.readOnly && d.storageDomain !== undefined).map((d) => d.name);
  return names.flatMap((name) => {
    const disk = config.disks[name];
    return disk === undefined ? [] : [disk.path];
  });
}

/**
 * Aborts the lease acquisition on SIGTERM/SIGINT (the launcher may wait for a lease for
 * long) or on `stop`; outside the pod only on `stop`: the process's signals are not the VM's.
 */
function abortOnTermination(stop: AbortSignal | undefined, outside: boolean): { signal: AbortSignal; done: () => void } {
  if (outside) return { signal: stop ?? new AbortController().signal, done: () => undefined };
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('termination requested while acquiring the lease'));
  stop?.addEventListener('abort', onSignal, { once: true });
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return {
    signal: abort.signal,
    done: () => {
      stop?.removeEventListener('abort', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

/**
 * Everything up to a QEMU process whose QMP answers. The HTTP API listens before QEMU
 * starts so that the Starting phase (and a start failure) can be observed.
 */
export async function launch(options: LaunchOptions): Promise<Launch> {
  const view = options.outside === undefined ? insideView(options.config) : await outsideView(options.config, options.outside);
  try {
    return await launchIn(options, view);
  } catch (err) {
    await view.close();
    throw err;
  }
}

/** The state directory emptied of an earlier QEMU's sockets and files, the disks probed, the seed written. */
async function prepareState(
  options: LaunchOptions,
  view: LaunchView,
  seen: StatePaths,
): Promise<{ podHost: PodHost | undefined; diskCache: Record<string, DiskCacheMode>; cloudInitSeed: string | undefined }> {
  const { config, logger } = options;
  const podHost = config.qemu.host !== 'pod' ? undefined : (options.podHost ?? new PodHost({ stateDir: view.stateDir, logger }));
  const adopt = options.adopt === true && podHost !== undefined;
  if (!adopt) {
    if (options.outside === undefined) await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
    for (const socket of [seen.qmpSocket, seen.serialSocket, seen.guestAgentSocket, seen.vncSocket]) await rm(socket, { force: true });
    await podHost?.clearStale();
  }
  const diskCache = await probeDisks(config, (p) => view.probeDisk(p));
  const cloudInit = config.template.cloudInit;
  if (cloudInit === undefined) return { podHost, diskCache, cloudInitSeed: undefined };
  // The running QEMU reads the seed it was started with.
  if (adopt) return { podHost, diskCache, cloudInitSeed: view.qemuPath(noCloudSeedPath(view.stateDir)) };
  const seed = await buildNoCloudSeed(
    { instanceId: config.vm.uid, hostname: config.vm.name, userData: cloudInit.userData, networkData: cloudInit.networkData },
    view.stateDir,
  );
  return { podHost, diskCache, cloudInitSeed: view.qemuPath(seed) };
}

/** An HA VM's lease; outside the pod its file and the disks are named through their held directories. */
async function leaseFor(options: LaunchOptions, view: LaunchView, vm: VmSupervisor, podHost: PodHost | undefined): Promise<LauncherLease | undefined> {
  const { config, logger } = options;
  if (config.lease === undefined) return undefined;
  return new LauncherLease({
    config: { ...config.lease, path: await view.seenPath(config.lease.path) },
    disksToFence: await Promise.all(disksToFence(config).map((d) => view.seenPath(d))),
    vm,
    logger,
    ...(options.leaseEnv === undefined ? {} : { env: options.leaseEnv }),
    ...(podHost === undefined ? {} : { podFenceDeadline: (ms: number) => podHost.setFenceDeadline(ms) }),
  });
}

/**
 * Before QEMU runs: the lease acquired; resumed for a QEMU adopted in its pod, which runs
 * under the lease the pod held (never acquired again, ADR 0136); a migration target
 * notes the source's.
 */
async function takeLease(leased: LauncherLease, options: LaunchOptions, podHost: PodHost | undefined): Promise<void> {
  if (options.config.mode !== 'run') return leased.noteSource();
  if (options.adopt === true && podHost !== undefined) return leased.resume(await podHost.fenceDeadlineFromNowMs());
  const termination = abortOnTermination(options.stopSignal, options.outside !== undefined);
  try {
    await leased.acquire(termination.signal);
  } finally {
    termination.done();
  }
}

async function launchIn(options: LaunchOptions, view: LaunchView): Promise<Launch> {
  const { config, logger } = options;
  const accelerator = await chooseAccelerator(config.allowEmulation || config.template.allowEmulation, options.acceleratorProbe);
  logger.info({ accelerator: accelerator.accelerator, why: accelerator.reason }, 'accelerator chosen');
  // QEMU's paths (the pod's) and this process's names for the same files.
  const paths = statePaths(config.stateDir);
  const seen = statePaths(view.stateDir);
  const { podHost, diskCache, cloudInitSeed } = await prepareState(options, view, seen);
  const plan = planMachine({ config, accelerator: accelerator.accelerator, paths, diskCache, cloudInitSeed });
  const removeTaps = await prepareTaps(config, logger);
  // A highly available VM's migration target keeps the guest paused (-S) until it holds the lease.
  const startPaused = config.lease !== undefined && config.mode === 'migration-target';
  const supervisor = new VmSupervisor({
    logger,
    qemuBinary: config.qemu.binary,
    qemuArgs: buildQemuArgs(startPaused ? { ...plan, startPaused } : plan),
    ...(podHost === undefined ? {} : { spawnQemu: (binary, args, log) => (options.adopt === true ? podHost.attach(log) : podHost.spawn(binary, args, log)) }),
    // `leased` is set below, before QEMU can start (and so exit).
    afterQemuExit: async (status) => leased?.afterQemuExit(status),
    qmpSocket: seen.qmpSocket,
    ...(view.connect === undefined ? {} : { connectSocket: view.connect }),
    accelerator: accelerator.accelerator,
    disks: plan.disks.map((d) => ({ name: d.name, path: d.path, cache: d.cache })),
    guestAgent: plan.sockets.guestAgent === undefined ? undefined : { socket: seen.guestAgentSocket, ...config.guestAgent },
  });
  const info = (): Info => {
    const v = supervisor.qmp?.greeting.QMP.version.qemu;
    return {
      apiVersions: [...LAUNCHER_API_VERSIONS],
      launcherVersion: LAUNCHER_VERSION,
      qemuVersion: v === undefined ? undefined : `${v.major}.${v.minor}.${v.micro}`,
      accelerator: accelerator.accelerator,
      acceleratorReason: accelerator.reason,
      mode: config.mode,
      vm: config.vm,
    };
  };
  const leased = await leaseFor(options, view, supervisor, podHost);
  const server = new ApiServer(logger, bearerTokenCheck(options.token));
  const metrics = await launcherMetrics({
    supervisor,
    config,
    guestMiB: plan.memory.sizeMiB,
    token: options.token,
    logger,
    // Outside the pod, the token files are the caller's to read: none unless given.
    metricsTokenFile: options.metricsTokenFile ?? (options.outside === undefined ? undefined : null),
  });
  registerV1Routes(server, { info, vm: supervisor, defaultGracePeriodSeconds: config.terminationGracePeriodSeconds, metrics });
  registerConsoleStreams(server, {
    serialSocket: seen.serialSocket,
    vncSocket: plan.sockets.vnc === undefined ? undefined : seen.vncSocket,
    ...(view.connect === undefined ? {} : { connect: view.connect }),
  });
  registerGuestInfoRoute(server, () => supervisor.agentClient);
  const migration = attachMigration({
    server,
    vm: supervisor,
    mode: config.mode,
    token: options.token,
    listenAddress: config.listen.address,
    stateDir: config.stateDir,
    logger,
    // Outside the pod an outgoing migration's TLS files go through the pod's state directory (ADR 0137).
    ...(view.tlsStaging === undefined ? {} : { tlsStaging: view.tlsStaging }),
    ...(leased === undefined
      ? {}
      : {
          lease: {
            handOver: (successor: string) => leased.handOver(successor),
            awaitHandover: () => leased.awaitHandover(),
            fail: (reason: string, message: string) => supervisor.killForLease(reason, message),
          },
        }),
  });
  const address = await view.listen(server, config.listen.address, config.listen.port);
  logger.info({ address: address.address, port: address.port }, 'launcher API listening');
  void supervisor.finished().then(removeTaps);
  const serialLog = new SerialLogRotator({ path: seen.serialLog, log: logger.child({ component: 'serial-log' }) });
  serialLog.start();
  void supervisor.finished().then(async () => {
    serialLog.stop();
    await view.close();
  });
  try {
    if (leased !== undefined) await takeLease(leased, options, podHost);
    const networkWait = abortOnTermination(options.stopSignal, options.outside !== undefined);
    try {
      const podNetwork = await startConfiguredPodNetwork(config, logger, networkWait.signal);
      if (podNetwork !== undefined) void supervisor.finished().then(() => podNetwork.close());
    } finally {
      networkWait.done();
    }
    await supervisor.start();
  } catch (err) {
    // A launcher process ends here; a node agent runs on (ADR 0136), so nothing may be
    // left behind: the API stops listening in the pod, the serial log is no longer
    // rotated, and a lease held is no longer renewed (it expires; QEMU, if it was
    // spawned, has been killed, and the pod's deadline stands).
    leased?.holder?.halt();
    serialLog.stop();
    await server.close().catch((why: unknown) => logger.warn({ err: why }, 'could not close the launcher API'));
    throw err;
  }
  return { supervisor, server, migration, lease: leased, address, accelerator, info };
}

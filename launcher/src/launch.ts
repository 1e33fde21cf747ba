// Prepares and starts one VM from a validated configuration: accelerator, state
// directory, disk cache modes, cloud-init seed, the QEMU command line, the supervisor
// and the HTTP API. main.ts owns the process (signals, exit codes); this owns the VM.
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { LauncherConfig } from './api/config.ts';
import type { Info } from './api/status.ts';
import { LAUNCHER_API_VERSIONS } from './api/status.ts';
import { buildNoCloudSeed } from './cloud-init/seed.ts';
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
import { PodHost } from './supervisor/pod-host.ts';
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
export async function probeDisks(config: LauncherConfig): Promise<Record<string, DiskCacheMode>> {
  const modes: Record<string, DiskCacheMode> = {};
  for (const [name, disk] of Object.entries(config.disks)) modes[name] = await probeDiskCacheMode(disk.path);
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

/** Aborts the lease acquisition on SIGTERM/SIGINT (the launcher may wait for a lease for long). */
function abortOnTermination(): { signal: AbortSignal; done: () => void } {
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new Error('termination requested while acquiring the lease'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return {
    signal: abort.signal,
    done: () => {
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
  const { config, logger } = options;
  const accelerator = await chooseAccelerator(config.allowEmulation || config.template.allowEmulation, options.acceleratorProbe);
  logger.info({ accelerator: accelerator.accelerator, why: accelerator.reason }, 'accelerator chosen');
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  const paths = statePaths(config.stateDir);
  for (const socket of [paths.qmpSocket, paths.serialSocket, paths.guestAgentSocket, paths.vncSocket]) await rm(socket, { force: true });
  const podHost = config.qemu.host !== 'pod' ? undefined : (options.podHost ?? new PodHost({ stateDir: config.stateDir, logger }));
  await podHost?.clearStale();
  const diskCache = await probeDisks(config);
  const cloudInit = config.template.cloudInit;
  const cloudInitSeed =
    cloudInit === undefined
      ? undefined
      : await buildNoCloudSeed(
          { instanceId: config.vm.uid, hostname: config.vm.name, userData: cloudInit.userData, networkData: cloudInit.networkData },
          config.stateDir,
        );
  const plan = planMachine({ config, accelerator: accelerator.accelerator, paths, diskCache, cloudInitSeed });
  const removeTaps = await prepareTaps(config, logger);
  // A highly available VM's migration target keeps the guest paused (-S) until it holds the lease.
  const startPaused = config.lease !== undefined && config.mode === 'migration-target';
  let lease: LauncherLease | undefined;
  const supervisor = new VmSupervisor({
    logger,
    qemuBinary: config.qemu.binary,
    qemuArgs: buildQemuArgs(startPaused ? { ...plan, startPaused } : plan),
    ...(podHost === undefined ? {} : { spawnQemu: (binary, args, log) => podHost.spawn(binary, args, log) }),
    afterQemuExit: async (status) => lease?.afterQemuExit(status),
    qmpSocket: paths.qmpSocket,
    accelerator: accelerator.accelerator,
    disks: plan.disks.map((d) => ({ name: d.name, path: d.path, cache: d.cache })),
    guestAgent: plan.sockets.guestAgent === undefined ? undefined : { socket: plan.sockets.guestAgent, ...config.guestAgent },
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
  if (config.lease !== undefined) {
    lease = new LauncherLease({
      config: config.lease,
      disksToFence: disksToFence(config),
      vm: supervisor,
      logger,
      ...(podHost === undefined ? {} : { podFenceDeadline: (ms: number) => podHost.setFenceDeadline(ms) }),
    });
  }
  const leased = lease;
  const server = new ApiServer(logger, bearerTokenCheck(options.token));
  const metrics = await launcherMetrics({ supervisor, config, guestMiB: plan.memory.sizeMiB, token: options.token, logger });
  registerV1Routes(server, { info, vm: supervisor, defaultGracePeriodSeconds: config.terminationGracePeriodSeconds, metrics });
  registerConsoleStreams(server, { serialSocket: plan.sockets.serial, vncSocket: plan.sockets.vnc });
  registerGuestInfoRoute(server, () => supervisor.agentClient);
  const migration = attachMigration({
    server,
    vm: supervisor,
    mode: config.mode,
    token: options.token,
    listenAddress: config.listen.address,
    stateDir: config.stateDir,
    logger,
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
  const address = await server.listen(config.listen.port, config.listen.address);
  logger.info({ address: address.address, port: address.port }, 'launcher API listening');
  void supervisor.finished().then(removeTaps);
  const serialLog = new SerialLogRotator({ path: paths.serialLog, log: logger.child({ component: 'serial-log' }) });
  serialLog.start();
  void supervisor.finished().then(() => serialLog.stop());
  if (leased !== undefined && config.mode === 'run') {
    const termination = abortOnTermination();
    try {
      await leased.acquire(termination.signal);
    } finally {
      termination.done();
    }
  } else if (leased !== undefined) {
    await leased.noteSource();
  }
  const networkWait = abortOnTermination();
  try {
    const podNetwork = await startConfiguredPodNetwork(config, logger, networkWait.signal);
    if (podNetwork !== undefined) void supervisor.finished().then(() => podNetwork.close());
  } finally {
    networkWait.done();
  }
  await supervisor.start();
  return { supervisor, server, migration, address, accelerator, info };
}

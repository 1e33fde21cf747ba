// One pod on a simulated node: sandbox (network namespace + address), device-plugin
// allocations (device-manager.ts), volumes, init containers in order, then the containers under the pod's restart policy,
// termination messages collected as each run ends, status written back on every
// change, and graceful termination.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Container, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { parseCpuMillis, parseQuantity, prepareContainerCgroups, removePodCgroups } from './cgroups.ts';
import type { ContainerLimits } from './cgroups.ts';
import { containerEnv, expandReferences } from './container-env.ts';
import { ContainerProcess } from './container-process.ts';
import type { BindMount, ContainerLaunch } from './container-process.ts';
import { containerArgv, resolveImage, UnknownImageError } from './images.ts';
import type { ImageTableOptions } from './images.ts';
import { createPodNetwork, deletePodNetwork, podNetnsName } from './pod-network.ts';
import { podStatus, restartDelayMs, shouldRestart } from './pod-status.ts';
import { containerSecurity, ContainerSecurityError } from './container-root.ts';
import { subPathSource } from './volumes.ts';
import { probeLoop } from './probes.ts';
import type { ContainerRecord, PodRecord } from './pod-status.ts';
import { prepareTerminationLog, terminationMessage } from './termination-message.ts';
import type { TerminationLog } from './termination-message.ts';
import { hasExpiringVolumes, materialiseVolumes, VolumeNotReadyError } from './volumes.ts';
import type { MaterialisedVolume, VolumeApi } from './volumes.ts';
import type { StorageView } from './storage-view.ts';
import { DeviceAllocationError, DevicesNotReadyError, NO_DEVICES } from './device-manager.ts';
import type { ContainerDevices } from './device-manager.ts';

/** The node's device manager as a pod sees it. */
export interface DeviceAllocator {
  allocate(podUid: string, container: string, resources: Readonly<Record<string, string>>): Promise<ContainerDevices>;
  release(podUid: string): void;
}

/** What a pod runner needs from the API server. */
export interface PodApi extends VolumeApi {
  patchPodStatus(namespace: string, name: string, uid: string, status: V1PodStatus): Promise<void>;
  /** Final removal after termination (grace period 0, preconditioned on the uid). */
  deletePod(namespace: string, name: string, uid: string): Promise<void>;
}

export interface PodRunnerContext {
  readonly log: Logger;
  readonly api: PodApi;
  readonly nodeName: string;
  readonly nodeIndex: number;
  readonly nodeIp: string;
  readonly images: ImageTableOptions;
  readonly podsDir: string;
  readonly allocateIp: (preferred: string | undefined) => string;
  readonly releaseIp: (ip: string) => void;
  /** The node's own view of the shared storage, when it has one. */
  readonly storageView?: StorageView;
  /** The node's device manager; without one no container gets a device. */
  readonly devices?: DeviceAllocator | undefined;
  /** The node's kubelet device-plugin directory (what a hostPath of /var/lib/kubelet/device-plugins mounts). */
  readonly devicePluginDir?: string | undefined;
}

function limitsOf(container: V1Container): ContainerLimits {
  const limits = container.resources?.limits ?? {};
  const requests = container.resources?.requests ?? {};
  return {
    memoryBytes: limits.memory === undefined ? undefined : Math.floor(parseQuantity(limits.memory)),
    cpuMillis: limits.cpu === undefined ? undefined : parseCpuMillis(limits.cpu),
    cpuRequestMillis: requests.cpu === undefined ? undefined : parseCpuMillis(requests.cpu),
  };
}

/** A container ready to start, with the message file the kubelet would mount for it. */
interface LaunchPlan {
  readonly launch: ContainerLaunch;
  readonly terminationLog: TerminationLog | undefined;
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Pause before a failed pod status write is sent again. */
const STATUS_RESEND_MS = 1000;

export class PodRunner {
  readonly uid: string;
  readonly #ctx: PodRunnerContext;
  readonly #log: Logger;
  #pod: V1Pod;
  readonly #record: PodRecord;
  readonly #processes = new Map<string, ContainerProcess>();
  readonly #abort = new AbortController();
  readonly #dir: string;
  #netns: string | undefined;
  #volumes = new Map<string, MaterialisedVolume>();
  #devices = new Map<string, ContainerDevices>();
  #pushing: Promise<void> | undefined;
  #dirty = false;
  #terminating: Promise<void> | undefined;
  #running: Promise<void> | undefined;

  constructor(ctx: PodRunnerContext, pod: V1Pod) {
    this.#ctx = ctx;
    this.#pod = pod;
    const meta = pod.metadata ?? {};
    this.uid = meta.uid ?? '';
    this.#log = ctx.log.child({ pod: `${meta.namespace ?? ''}/${meta.name ?? ''}`, uid: this.uid });
    this.#dir = path.join(ctx.podsDir, this.uid);
    const previous = new Map((pod.status?.containerStatuses ?? []).map((s) => [s.name, s]));
    const record = (c: V1Container, init: boolean): ContainerRecord => {
      const prev = previous.get(c.name);
      const ran = prev !== undefined && (prev.state?.running !== undefined || prev.state?.terminated !== undefined);
      return {
        name: c.name, image: c.image ?? '', init, done: false, lastTermination: undefined, ready: false,
        state: { kind: 'waiting', reason: 'ContainerCreating' },
        restartCount: (prev?.restartCount ?? 0) + (ran ? 1 : 0),
      };
    };
    this.#record = {
      restartPolicy: pod.spec?.restartPolicy ?? 'Always',
      hostIp: ctx.nodeIp,
      podIp: undefined,
      startTime: pod.status?.startTime ?? new Date(),
      sandboxReady: false,
      transitions: new Map(),
      problem: undefined,
      containers: [
        ...(pod.spec?.initContainers ?? []).map((c) => record(c, true)),
        ...(pod.spec?.containers ?? []).map((c) => record(c, false)),
      ],
    };
  }

  get podIp(): string | undefined {
    return this.#record.podIp;
  }

  get terminating(): boolean {
    return this.#terminating !== undefined;
  }

  update(pod: V1Pod): void {
    this.#pod = pod;
  }

  start(): void {
    this.#running = this.#run().catch((err: unknown) => {
      if (!this.#abort.signal.aborted) this.#log.error({ err }, 'pod failed');
    });
  }

  async #run(): Promise<void> {
    fs.mkdirSync(this.#dir, { recursive: true });
    this.#push();
    this.#createSandbox();
    this.#push();
    if (!(await this.#allocateDevices())) {
      this.#markAllDone();
      return;
    }
    await this.#prepareVolumes();
    for (const rec of this.#record.containers.filter((c) => c.init)) {
      const spec = (this.#pod.spec?.initContainers ?? []).find((c) => c.name === rec.name);
      if (spec !== undefined) await this.#supervise(rec, spec);
      if (this.#abort.signal.aborted || rec.state.kind !== 'terminated' || rec.state.exitCode !== 0) {
        this.#markAllDone();
        return;
      }
    }
    const mains = this.#record.containers.filter((c) => !c.init);
    await Promise.all(mains.map(async (rec) => {
      const spec = (this.#pod.spec?.containers ?? []).find((c) => c.name === rec.name);
      if (spec !== undefined) await this.#supervise(rec, spec);
    }));
  }

  #markAllDone(): void {
    for (const c of this.#record.containers) c.done = true;
    this.#push();
  }

  #createSandbox(): void {
    if (this.#pod.spec?.hostNetwork === true) {
      this.#record.podIp = this.#ctx.nodeIp;
    } else {
      const podIp = this.#ctx.allocateIp(this.#pod.status?.podIP);
      this.#record.podIp = podIp;
      this.#netns = podNetnsName(this.#ctx.nodeIndex, this.uid);
      createPodNetwork(this.#netns, this.uid, podIp);
    }
    this.#record.sandboxReady = true;
    this.#log.info({ podIp: this.#record.podIp }, 'sandbox ready');
  }

  /**
   * Allocates every container's device-plugin resources (limits, else requests), as the
   * kubelet does at admission; waits while a registered resource has too few units, and
   * fails the pod (UnexpectedAdmissionError) when a plugin refuses. False when it failed.
   */
  async #allocateDevices(): Promise<boolean> {
    const containers = [...(this.#pod.spec?.initContainers ?? []), ...(this.#pod.spec?.containers ?? [])];
    for (;;) {
      try {
        for (const c of containers) {
          const wanted = c.resources?.limits ?? c.resources?.requests ?? {};
          const manager = this.#ctx.devices;
          this.#devices.set(c.name, manager === undefined || Object.keys(wanted).length === 0 ? NO_DEVICES : await manager.allocate(this.uid, c.name, wanted));
        }
        this.#record.problem = undefined;
        return true;
      } catch (err) {
        if (err instanceof DeviceAllocationError) {
          this.#log.warn({ err }, 'device allocation failed');
          // The kubelet rejects the pod at admission: it fails without running a container.
          this.#record.problem = { reason: 'UnexpectedAdmissionError', message: `Allocate failed due to ${err.message}` };
          return false;
        }
        if (!(err instanceof DevicesNotReadyError)) throw err;
        this.#record.problem = { reason: 'ContainerCreating', message: err.message };
        this.#push();
        await sleep(2000, undefined, { signal: this.#abort.signal });
      }
    }
  }

  async #prepareVolumes(): Promise<void> {
    const volumesDir = path.join(this.#dir, 'volumes');
    for (;;) {
      try {
        this.#volumes = await materialiseVolumes(this.#ctx.api, this.#pod, volumesDir, this.#ctx.storageView, this.#ctx.devicePluginDir);
        this.#record.problem = undefined;
        break;
      } catch (err) {
        if (!(err instanceof VolumeNotReadyError)) throw err;
        this.#record.problem = { reason: 'ContainerCreating', message: err.message };
        this.#push();
        await sleep(2000, undefined, { signal: this.#abort.signal });
      }
    }
    if (hasExpiringVolumes(this.#pod)) void this.#refreshTokens(volumesDir);
  }

  /** Re-issues projected service-account tokens well before they expire. */
  async #refreshTokens(volumesDir: string): Promise<void> {
    for (;;) {
      try {
        await sleep(10 * 60_000, undefined, { signal: this.#abort.signal });
        this.#volumes = await materialiseVolumes(this.#ctx.api, this.#pod, volumesDir, this.#ctx.storageView, this.#ctx.devicePluginDir);
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        this.#log.warn({ err }, 'volume refresh failed');
      }
    }
  }

  async #launch(spec: V1Container): Promise<LaunchPlan> {
    const image = resolveImage(spec.image ?? '', this.#ctx.images);
    const hostname = this.#pod.spec?.hostNetwork === true ? this.#ctx.nodeName : (this.#pod.spec?.hostname ?? this.#pod.metadata?.name ?? '');
    const env = await containerEnv(this.#ctx.api, this.#pod, spec, { pathPrefix: image.pathPrefix, hostname });
    const argv = containerArgv(image, spec.command, spec.args).map((a) => expandReferences(a, env));
    if (argv.length === 0) throw new UnknownImageError(`container ${spec.name} has no command and its image no entrypoint`);
    const mounts: BindMount[] = (spec.volumeMounts ?? []).map((m) => {
      const volume = this.#volumes.get(m.name);
      if (volume === undefined) throw new VolumeNotReadyError(`volume ${m.name} is not defined`);
      const source = m.subPath === undefined || m.subPath === '' ? volume.hostPath : subPathSource(volume.hostPath, m.subPath);
      return { source, target: m.mountPath, readOnly: m.readOnly === true || volume.readOnly };
    });
    const allocated = this.#devices.get(spec.name) ?? NO_DEVICES;
    for (const m of allocated.mounts) mounts.push({ source: m.hostPath, target: m.containerPath, readOnly: m.readOnly });
    for (const [name, value] of Object.entries(allocated.envs)) env[name] ??= value;
    const containerDir = path.join(this.#dir, 'containers', spec.name);
    const terminationLog = prepareTerminationLog(containerDir, spec);
    if (terminationLog !== undefined) mounts.push({ source: terminationLog.hostPath, target: terminationLog.containerPath, readOnly: false });
    const rootDir = path.join(containerDir, 'root');
    fs.mkdirSync(rootDir, { recursive: true });
    const launch: ContainerLaunch = {
      argv, env, hostname, mounts, devices: allocated.devices,
      root: { dir: rootDir, imagePaths: image.rootPaths, hiddenPaths: image.hiddenPaths, revealedPaths: image.revealedPaths, imageBinds: image.imageBinds },
      security: containerSecurity(this.#pod, spec),
      workingDir: spec.workingDir ?? '/',
      netns: this.#netns,
      cgroupProcFiles: prepareContainerCgroups(this.#ctx.nodeName, this.uid, spec.name, limitsOf(spec)),
      scriptPath: path.join(this.#dir, `${spec.name}.init.sh`),
      logPath: path.join(this.#dir, `${spec.name}.log`),
    };
    return { launch, terminationLog };
  }

  async #supervise(rec: ContainerRecord, spec: V1Container): Promise<void> {
    while (!this.#abort.signal.aborted) {
      let plan: LaunchPlan;
      try {
        plan = await this.#launch(spec);
      } catch (err) {
        if (!(err instanceof UnknownImageError || err instanceof VolumeNotReadyError || err instanceof ContainerSecurityError)) throw err;
        const reason = err instanceof UnknownImageError ? 'ErrImageNeverPull' : 'CreateContainerConfigError';
        rec.state = { kind: 'waiting', reason, message: err.message };
        this.#push();
        await sleep(5000, undefined, { signal: this.#abort.signal });
        continue;
      }
      const { launch } = plan;
      const logOffset = fileSize(launch.logPath);
      const proc = new ContainerProcess(launch);
      this.#processes.set(rec.name, proc);
      rec.state = { kind: 'running', startedAt: proc.startedAt };
      rec.ready = rec.init || spec.readinessProbe === undefined;
      this.#log.info({ container: rec.name, pid: proc.pid, argv: launch.argv }, 'container started');
      this.#push();
      const probing = new AbortController();
      this.#startProbes(spec, rec, proc, probing.signal);
      const exit = await proc.exited;
      probing.abort();
      rec.ready = false;
      this.#processes.delete(rec.name);
      rec.state = {
        kind: 'terminated', exitCode: exit.exitCode, reason: exit.exitCode === 0 ? 'Completed' : 'Error',
        startedAt: proc.startedAt, finishedAt: new Date(),
        message: this.#terminationMessage(spec, plan, logOffset, exit.exitCode),
      };
      this.#log.info({ container: rec.name, exitCode: exit.exitCode, signal: exit.signal }, 'container exited');
      if (this.#terminating !== undefined || !shouldRestart(this.#record.restartPolicy, exit.exitCode, rec.init)) {
        rec.done = true;
        this.#push();
        return;
      }
      rec.lastTermination = rec.state;
      rec.state = { kind: 'waiting', reason: 'CrashLoopBackOff', message: `back-off restarting container ${rec.name}` };
      this.#push();
      await sleep(restartDelayMs(rec.restartCount + 1), undefined, { signal: this.#abort.signal }).catch(() => undefined);
      rec.restartCount++;
    }
  }

  #terminationMessage(spec: V1Container, plan: LaunchPlan, logOffset: number, exitCode: number): string | undefined {
    try {
      return terminationMessage({
        log: plan.terminationLog, fallbackToLogs: spec.terminationMessagePolicy === 'FallbackToLogsOnError',
        logPath: plan.launch.logPath, logOffset, exitCode,
      });
    } catch (err) {
      this.#log.warn({ err, container: spec.name }, 'reading the termination message failed');
      return `Error on reading termination log: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  #startProbes(spec: V1Container, rec: ContainerRecord, proc: ContainerProcess, signal: AbortSignal): void {
    const namedPorts = new Map((spec.ports ?? []).flatMap((p) => (p.name === undefined ? [] : [[p.name, p.containerPort] as const])));
    const target = { podIp: this.#record.podIp ?? '', pid: () => proc.containerPid(), namedPorts };
    const stop = (): void => { if (!signal.aborted) proc.signal('SIGKILL'); };
    if (spec.readinessProbe !== undefined) {
      probeLoop({
        probe: spec.readinessProbe, target, initial: false, signal,
        onChange: (healthy) => {
          this.#log.info({ container: rec.name, ready: healthy }, 'readiness changed');
          rec.ready = healthy;
          this.#push();
        },
        // As the kubelet's Unhealthy events: the first failure in a row, then about one every 30 s.
        onFailure: (reason, consecutive) => {
          if (consecutive === 1 || consecutive % 6 === 0) this.#log.info({ container: rec.name, reason, consecutive }, 'readiness probe failed');
        },
      }).catch(() => undefined);
    }
    if (spec.livenessProbe !== undefined) {
      const grace = this.#pod.spec?.terminationGracePeriodSeconds ?? 30;
      probeLoop({
        probe: spec.livenessProbe, target, initial: true, signal,
        onChange: (healthy) => {
          if (healthy) return;
          this.#log.info({ container: rec.name }, 'liveness probe failed; killing the container');
          proc.signal('SIGTERM');
          setTimeout(stop, grace * 1000).unref();
        },
        onFailure: (reason, consecutive) => this.#log.info({ container: rec.name, reason, consecutive }, 'liveness probe failed'),
      }).catch(() => undefined);
    }
  }

  /**
   * Serialised, coalescing status writes. A write that fails (the API server did not
   * answer) is sent again, as the kubelet's status manager does: otherwise a container
   * that exited meanwhile stays Running in the API for good.
   */
  #push(): void {
    this.#dirty = true;
    if (this.#pushing !== undefined) return;
    this.#pushing = (async () => {
      while (this.#dirty) {
        this.#dirty = false;
        const meta = this.#pod.metadata ?? {};
        try {
          await this.#ctx.api.patchPodStatus(meta.namespace ?? '', meta.name ?? '', this.uid, podStatus(this.#record, new Date()));
        } catch (err) {
          this.#log.warn({ err }, 'status update failed; sending it again');
          this.#dirty = true;
          await sleep(STATUS_RESEND_MS);
        }
      }
      this.#pushing = undefined;
    })();
  }

  /** SIGTERM every container, SIGKILL after the grace period, clean up, remove the pod object. */
  terminate(gracePeriodSeconds: number, removeObject: boolean): Promise<void> {
    this.#terminating ??= this.#terminate(gracePeriodSeconds, removeObject);
    return this.#terminating;
  }

  async #terminate(gracePeriodSeconds: number, removeObject: boolean): Promise<void> {
    this.#log.info({ gracePeriodSeconds }, 'terminating pod');
    const procs = [...this.#processes.values()];
    for (const p of procs) p.signal('SIGTERM');
    const all = Promise.all(procs.map((p) => p.exited));
    const timer = sleep(gracePeriodSeconds * 1000).then(() => 'timeout' as const);
    if ((await Promise.race([all, timer])) === 'timeout') {
      this.#log.info('grace period over, killing');
      for (const p of procs) p.signal('SIGKILL');
      await all;
    }
    this.#abort.abort();
    this.#log.info('containers stopped');
    await this.#running;
    this.#log.info('supervision over');
    for (const c of this.#record.containers) {
      if (c.state.kind === 'waiting') c.state = { kind: 'terminated', exitCode: 0, reason: 'ContainerCannotRun', startedAt: new Date(), finishedAt: new Date() };
      c.done = true;
    }
    this.#cleanup();
    this.#push();
    await this.#pushing;
    if (removeObject) {
      const meta = this.#pod.metadata ?? {};
      await this.#ctx.api.deletePod(meta.namespace ?? '', meta.name ?? '', this.uid);
      this.#log.info('pod removed');
    }
  }

  #cleanup(): void {
    if (this.#netns !== undefined) deletePodNetwork(this.#netns);
    if (this.#record.podIp !== undefined && this.#netns !== undefined) this.#ctx.releaseIp(this.#record.podIp);
    removePodCgroups(this.#ctx.nodeName, this.uid);
    this.#ctx.devices?.release(this.uid);
    fs.rmSync(path.join(this.#dir, 'volumes'), { recursive: true, force: true });
    fs.rmSync(path.join(this.#dir, 'containers'), { recursive: true, force: true });
  }
}

// Turns the simulator's record of a pod's containers into the Pod status the
// kubelet would report: phase, conditions, container statuses.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import type { V1ContainerState, V1ContainerStatus, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';

export type ContainerState =
  | { readonly kind: 'waiting'; readonly reason: string; readonly message?: string }
  | { readonly kind: 'running'; readonly startedAt: Date }
  | {
    readonly kind: 'terminated'; readonly exitCode: number; readonly reason: string;
    readonly signal?: number; readonly startedAt: Date; readonly finishedAt: Date;
    /** The termination message (file, or log tail under FallbackToLogsOnError). */
    readonly message?: string | undefined;
  };

export interface ContainerRecord {
  readonly name: string;
  readonly image: string;
  readonly init: boolean;
  state: ContainerState;
  lastTermination: ContainerState | undefined;
  restartCount: number;
  /** Readiness: true while running when there is no readiness probe, else the probe's verdict. */
  ready: boolean;
  /** True once the container will never run again (restart policy says so). */
  done: boolean;
}

export interface PodRecord {
  readonly restartPolicy: string;
  readonly hostIp: string;
  podIp: string | undefined;
  startTime: Date;
  sandboxReady: boolean;
  readonly containers: readonly ContainerRecord[];
  readonly transitions: Map<string, { status: string; time: Date }>;
  /** A pod-level failure (e.g. an unknown image or a missing volume) to show in the status. */
  problem: { reason: string; message: string } | undefined;
}

function apiState(state: ContainerState): V1ContainerState {
  switch (state.kind) {
    case 'waiting':
      return { waiting: { reason: state.reason, message: state.message } };
    case 'running':
      return { running: { startedAt: state.startedAt } };
    case 'terminated':
      return {
        terminated: {
          exitCode: state.exitCode, reason: state.reason, signal: state.signal,
          startedAt: state.startedAt, finishedAt: state.finishedAt, message: state.message,
        },
      };
  }
}

function containerStatus(c: ContainerRecord): V1ContainerStatus {
  return {
    name: c.name,
    image: c.image,
    imageID: `keyvirt-nodesim://${c.image}`,
    containerID: c.state.kind === 'waiting' && c.restartCount === 0 ? undefined : `keyvirt-nodesim://${c.name}-${c.restartCount}`,
    state: apiState(c.state),
    lastState: c.lastTermination === undefined ? {} : apiState(c.lastTermination),
    ready: !c.init && c.state.kind === 'running' && c.ready,
    started: c.state.kind === 'running',
    restartCount: c.restartCount,
  };
}

/** The pod phase, following the kubelet's rules. */
export function podPhase(pod: PodRecord): string {
  const inits = pod.containers.filter((c) => c.init);
  const mains = pod.containers.filter((c) => !c.init);
  const initFailed = inits.some((c) => c.done && c.state.kind === 'terminated' && c.state.exitCode !== 0);
  if (initFailed) return 'Failed';
  if (!inits.every((c) => c.done)) return 'Pending';
  if (mains.some((c) => c.state.kind === 'running')) return 'Running';
  if (mains.every((c) => c.done)) {
    return mains.every((c) => c.state.kind === 'terminated' && c.state.exitCode === 0) ? 'Succeeded' : 'Failed';
  }
  // Restarting after an exit keeps a started pod Running.
  if (mains.some((c) => c.restartCount > 0 || c.state.kind === 'terminated')) return 'Running';
  return 'Pending';
}

function condition(pod: PodRecord, type: string, ok: boolean, now: Date): V1PodCondition {
  const status = ok ? 'True' : 'False';
  const previous = pod.transitions.get(type);
  if (previous?.status !== status) pod.transitions.set(type, { status, time: now });
  const time = pod.transitions.get(type)?.time ?? now;
  return { type, status, lastTransitionTime: time, lastProbeTime: undefined };
}

export function podStatus(pod: PodRecord, now: Date): V1PodStatus {
  const inits = pod.containers.filter((c) => c.init);
  const mains = pod.containers.filter((c) => !c.init);
  const phase = podPhase(pod);
  const ready = phase === 'Running' && mains.every((c) => c.state.kind === 'running' && c.ready);
  const ips = pod.podIp === undefined ? undefined : [{ ip: pod.podIp }];
  return {
    phase,
    hostIP: pod.hostIp,
    hostIPs: [{ ip: pod.hostIp }],
    podIP: pod.podIp,
    podIPs: ips,
    startTime: pod.startTime,
    reason: pod.problem?.reason,
    message: pod.problem?.message,
    conditions: [
      condition(pod, 'PodReadyToStartContainers', pod.sandboxReady, now),
      condition(pod, 'Initialized', inits.every((c) => c.done), now),
      condition(pod, 'Ready', ready, now),
      condition(pod, 'ContainersReady', ready, now),
      condition(pod, 'PodScheduled', true, now),
    ],
    initContainerStatuses: inits.length === 0 ? undefined : inits.map(containerStatus),
    containerStatuses: mains.map(containerStatus),
  };
}

/** Whether a container that exited with `exitCode` runs again under `restartPolicy`. */
export function shouldRestart(restartPolicy: string, exitCode: number, init: boolean): boolean {
  if (init) return exitCode !== 0 && restartPolicy !== 'Never';
  if (restartPolicy === 'Always') return true;
  if (restartPolicy === 'OnFailure') return exitCode !== 0;
  return false;
}

/** Kubelet-style crash-loop back-off: 1 s doubling to 30 s (shortened for a simulator). */
export function restartDelayMs(restartCount: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, restartCount - 1));
}

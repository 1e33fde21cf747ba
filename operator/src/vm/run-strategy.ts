// runStrategy semantics and start/stop/restart requests, as pure functions of the VM and
// its launcher pod. Durable state lives only in the API server: the spec, two
// operator-owned annotations, and the finished launcher pod itself (kept as the record
// that a run ended, until the VM is started again).
import type { RunStrategy, VirtualMachine } from '@keyvirt/crds';
import { ANNOTATION_DESIRED_STATE, ANNOTATION_REQUEST, ANNOTATION_RESTART_OF } from './names.ts';

export type LauncherPodState =
  | { kind: 'none' }
  | { kind: 'active'; uid: string; terminating: boolean }
  | { kind: 'finished'; uid: string; succeeded: boolean; terminating: boolean; finishedAt: string | undefined };

export const REQUESTS = ['start', 'stop', 'restart'] as const;
export type RunRequest = (typeof REQUESTS)[number];

/** What consuming a request changes: the run strategy, annotations (null removes). */
export interface RequestEffect {
  runStrategy?: RunStrategy;
  annotations: Record<string, string | null>;
  event: { type: 'Normal' | 'Warning'; reason: string; message: string };
}

function annotation(vm: VirtualMachine, key: string): string | undefined {
  return vm.metadata.annotations?.[key];
}

/** Turns a pending `keyvirt.io/request` annotation into durable state, or undefined when there is none. */
export function consumeRequest(vm: VirtualMachine, pod: LauncherPodState): RequestEffect | undefined {
  const raw = annotation(vm, ANNOTATION_REQUEST);
  if (raw === undefined) return undefined;
  const annotations: Record<string, string | null> = { [ANNOTATION_REQUEST]: null };
  const strategy = vm.spec.runStrategy;
  const request = raw.trim().toLowerCase();
  const podUid = pod.kind === 'none' ? undefined : pod.uid;
  const manualLike = strategy === 'Manual' || strategy === 'Once';
  switch (request) {
    case 'start': {
      if (strategy === 'Halted') {
        return { runStrategy: 'Always', annotations, event: normal('StartRequested', 'start requested: runStrategy Halted → Always') };
      }
      if (manualLike) annotations[ANNOTATION_DESIRED_STATE] = 'Running';
      if (pod.kind === 'finished' && podUid !== undefined) annotations[ANNOTATION_RESTART_OF] = podUid;
      return { annotations, event: normal('StartRequested', 'start requested') };
    }
    case 'stop': {
      if (strategy === 'Always' || strategy === 'RerunOnFailure') {
        return { runStrategy: 'Halted', annotations, event: normal('StopRequested', `stop requested: runStrategy ${strategy} → Halted`) };
      }
      if (manualLike) annotations[ANNOTATION_DESIRED_STATE] = 'Stopped';
      return { annotations, event: normal('StopRequested', 'stop requested') };
    }
    case 'restart': {
      if (strategy === 'Halted') {
        return { annotations, event: warning('RequestIgnored', 'restart ignored: the VM is Halted; request start instead') };
      }
      if (manualLike) annotations[ANNOTATION_DESIRED_STATE] = 'Running';
      if (podUid !== undefined) annotations[ANNOTATION_RESTART_OF] = podUid;
      return { annotations, event: normal('RestartRequested', 'restart requested') };
    }
    default:
      return { annotations, event: warning('RequestIgnored', `unknown request ${JSON.stringify(raw)}: use start, stop or restart`) };
  }
}

function normal(reason: string, message: string): RequestEffect['event'] {
  return { type: 'Normal', reason, message };
}
function warning(reason: string, message: string): RequestEffect['event'] {
  return { type: 'Warning', reason, message };
}

/** Whether the VM should be running now. */
export function wantsRunning(vm: VirtualMachine, pod: LauncherPodState): boolean {
  const desired = annotation(vm, ANNOTATION_DESIRED_STATE);
  switch (vm.spec.runStrategy) {
    case 'Halted':
      return false;
    case 'Always':
      return true;
    case 'RerunOnFailure':
      return !(pod.kind === 'finished' && pod.succeeded && annotation(vm, ANNOTATION_RESTART_OF) !== pod.uid);
    case 'Manual':
      return desired === 'Running';
    case 'Once':
      return desired !== 'Stopped';
  }
}

export type Decision =
  /** Create the launcher pod. */
  | { action: 'create' }
  /** Stop the guest gracefully, then delete the pod. */
  | { action: 'stop'; uid: string; why: 'halted' | 'restart' | 'deleting' }
  /** Delete a finished pod (to start again, or because the VM must not run). */
  | { action: 'delete'; uid: string; restartAfterFailure: boolean }
  /** Wait: a pod is terminating, or nothing to do. */
  | { action: 'none' };

export interface DecisionResult {
  decision: Decision;
  /** Operator-owned annotation updates (null removes). */
  annotations: Record<string, string | null>;
}

/** The next step for a VM that is not being deleted. */
export function decide(vm: VirtualMachine, pod: LauncherPodState): DecisionResult {
  const annotations: Record<string, string | null> = {};
  const restartOf = annotation(vm, ANNOTATION_RESTART_OF);
  if (pod.kind !== 'none' && pod.terminating) return { decision: { action: 'none' }, annotations };
  if (restartOf !== undefined) {
    if (pod.kind !== 'none' && pod.uid === restartOf) {
      const decision: Decision =
        pod.kind === 'active'
          ? { action: 'stop', uid: pod.uid, why: 'restart' }
          : { action: 'delete', uid: pod.uid, restartAfterFailure: false };
      return { decision, annotations };
    }
    annotations[ANNOTATION_RESTART_OF] = null;
  }
  const strategy = vm.spec.runStrategy;
  const want = wantsRunning(vm, pod);
  if (pod.kind === 'finished') {
    if (strategy === 'Manual' || strategy === 'Once') {
      if (annotation(vm, ANNOTATION_DESIRED_STATE) !== 'Stopped') annotations[ANNOTATION_DESIRED_STATE] = 'Stopped';
      return { decision: { action: 'none' }, annotations };
    }
    if (!want && strategy !== 'Halted') return { decision: { action: 'none' }, annotations };
    return { decision: { action: 'delete', uid: pod.uid, restartAfterFailure: want && !pod.succeeded }, annotations };
  }
  if (pod.kind === 'active') {
    return { decision: want ? { action: 'none' } : { action: 'stop', uid: pod.uid, why: 'halted' }, annotations };
  }
  if (want && strategy === 'Once' && annotation(vm, ANNOTATION_DESIRED_STATE) === undefined) {
    annotations[ANNOTATION_DESIRED_STATE] = 'Running';
  }
  return { decision: want ? { action: 'create' } : { action: 'none' }, annotations };
}

/** The decision for a VM being deleted: stop, then delete, then drop the finalizer. */
export function decideDeletion(pod: LauncherPodState): Decision | 'release' {
  if (pod.kind === 'none') return 'release';
  if (pod.terminating) return { action: 'none' };
  if (pod.kind === 'active') return { action: 'stop', uid: pod.uid, why: 'deleting' };
  return { action: 'delete', uid: pod.uid, restartAfterFailure: false };
}

/** CrashLoop backoff after consecutive failed starts: 10 s doubling to 5 min (KubeVirt's). */
export function crashLoopDelayMs(consecutiveFailures: number): number {
  if (consecutiveFailures <= 0) return 0;
  return Math.min(10_000 * 2 ** Math.min(consecutiveFailures - 1, 10), 300_000);
}

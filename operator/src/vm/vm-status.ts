// The VM status as a pure function of what the controller observed: the launcher pod,
// the launcher's own status (from its event stream), and any reason the VM cannot start.
// Conditions keep their lastTransitionTime while their status does not change, and keep
// a stable order.
import type {
  Condition,
  VirtualMachine,
  VirtualMachineMigration,
  VirtualMachineMigrationState,
  VirtualMachineInterfaceStatus,
  VirtualMachinePhase,
  VirtualMachineStatus,
} from '@keyvirt/crds';
import { boundLauncherStatus, type Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import { liveMigratableCondition, type NotMigratable } from './live-migratable.ts';
import type { Reachability } from './launcher-reachability.ts';
import type { LauncherPodState } from './run-strategy.ts';

/** Why the VM cannot start: shown as the phase, the Ready condition and an event. */
export interface StartBlocker {
  readonly phase: 'Unschedulable' | 'Failed' | 'Scheduling' | 'Stopped';
  readonly reason: string;
  readonly message: string;
}

export interface StatusInput {
  vm: VirtualMachine;
  pod: Pod | undefined;
  podState: LauncherPodState;
  /** The launcher's latest status, when its event stream has delivered one. */
  launcher: LauncherStatus | undefined;
  wantRunning: boolean;
  /** A graceful stop is in progress. */
  stopping: boolean;
  blocker: StartBlocker | undefined;
  /** Why the VM cannot live-migrate, if it cannot. */
  notMigratable: readonly NotMigratable[];
  /** A CrashLoop backoff is in effect until this time. */
  crashLoopUntil: string | undefined;
  startFailure: VirtualMachineStatus['startFailure'];
  restartCount: number | undefined;
  /** The VM's newest VirtualMachineMigration, if any. */
  migration?: VirtualMachineMigration | undefined;
  /** A migration is handing the VM over to its target pod. */
  migrating?: boolean | undefined;
  /** Whether the active launcher can be heard (ADR 0064); reachable when absent. */
  reachability?: Reachability | undefined;
  /** The HighAvailability condition of an HA VM (absent for other VMs). */
  highAvailability?: Omit<Condition, 'lastTransitionTime'> | undefined;
  now: string;
}

const CONDITION_ORDER = ['Ready', 'AgentConnected', 'LiveMigratable', 'Paused', 'HighAvailability'] as const;

export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const launcherPhaseMap: Record<LauncherStatus['phase'], VirtualMachinePhase> = {
  Starting: 'Starting',
  WaitingForMigration: 'Starting',
  Running: 'Running',
  Paused: 'Paused',
  Migrating: 'Migrating',
  Stopping: 'Stopping',
  Stopped: 'Stopping',
  Failed: 'Failed',
};

function phaseOf(input: StatusInput): VirtualMachinePhase {
  const { podState, pod, launcher } = input;
  if (podState.kind === 'none') {
    if (input.migrating === true) return 'Migrating';
    if (input.blocker !== undefined) return input.blocker.phase;
    if (input.crashLoopUntil !== undefined) return 'CrashLoop';
    return input.wantRunning ? 'Scheduling' : 'Stopped';
  }
  if (podState.terminating || input.stopping) return 'Stopping';
  if (input.migrating === true) return 'Migrating';
  if (podState.kind === 'finished') {
    if (podState.succeeded) return 'Stopped';
    return input.crashLoopUntil !== undefined ? 'CrashLoop' : 'Failed';
  }
  if (pod?.spec.nodeName === undefined) return 'Scheduling';
  // What the launcher said last is not claimed while it cannot be heard (ADR 0064).
  if (input.reachability?.kind === 'unreachable') return 'Unknown';
  if (launcher === undefined) return carriedPhase(input) ?? 'Starting';
  return launcherPhaseMap[launcher.phase];
}

/** Phases a running guest may be in; a launcher not heard from yet does not undo them. */
const GUEST_ALIVE_PHASES: readonly VirtualMachinePhase[] = ['Running', 'Paused', 'Migrating'];

/**
 * The phase to keep while a live launcher pod has not reported yet (the operator just
 * restarted, or a migration target was just promoted): the pod already ran the guest
 * when the previous status named it (as the launcher or as the migration target), so
 * the guest is not starting anew.
 */
function carriedPhase(input: StatusInput): VirtualMachinePhase | undefined {
  const previous = input.vm.status;
  const name = input.pod?.metadata.name;
  if (previous?.phase === undefined || name === undefined || !GUEST_ALIVE_PHASES.includes(previous.phase)) return undefined;
  const known = previous.launcherPod === name || previous.migrationState?.targetPod === name;
  return known ? previous.phase : undefined;
}

function condition(type: string, status: Condition['status'], reason: string, message: string): Omit<Condition, 'lastTransitionTime'> {
  return { type, status, reason, message };
}

function readyCondition(input: StatusInput, phase: VirtualMachinePhase): Omit<Condition, 'lastTransitionTime'> {
  if (phase === 'Running') return condition('Ready', 'True', 'Running', 'the guest is running');
  const reach = input.reachability;
  if (phase === 'Unknown' && reach?.kind === 'unreachable') return condition('Ready', 'Unknown', reach.reason, reach.message);
  if (input.blocker !== undefined) return condition('Ready', 'False', input.blocker.reason, input.blocker.message);
  const launcherReason = input.launcher?.reason;
  const message = input.launcher?.message ?? describePhase(phase, input);
  return condition('Ready', 'False', launcherReason !== undefined && /^[A-Za-z][A-Za-z0-9_]*$/.test(launcherReason) ? launcherReason : phase, message);
}

function describePhase(phase: VirtualMachinePhase, input: StatusInput): string {
  switch (phase) {
    case 'Stopped':
      return 'the VM is not running';
    case 'Scheduling':
      return 'waiting for the launcher pod to be scheduled';
    case 'Starting':
      return 'the launcher is starting the guest';
    case 'CrashLoop':
      return `the VM failed to run; next attempt at ${input.crashLoopUntil ?? 'soon'}`;
    case 'Stopping':
      return 'the guest is shutting down';
    case 'Failed':
      return terminationMessage(input.pod) ?? 'the launcher exited with a failure';
    default:
      return `the VM is ${phase}`;
  }
}

function terminationMessage(pod: Pod | undefined): string | undefined {
  const term = pod?.status?.containerStatuses?.[0]?.state?.terminated;
  if (term === undefined) return pod?.status?.message;
  return `the launcher exited with code ${term.exitCode}${term.reason === undefined ? '' : ` (${term.reason})`}${term.message === undefined ? '' : `: ${term.message.slice(0, 500)}`}`;
}

function agentCondition(input: StatusInput, phase: VirtualMachinePhase): Omit<Condition, 'lastTransitionTime'> {
  if (!input.vm.spec.template.guestAgent) return condition('AgentConnected', 'False', 'AgentDisabled', 'the VM does not expect a guest agent');
  const reach = input.reachability;
  if (phase === 'Unknown' && reach?.kind === 'unreachable') return condition('AgentConnected', 'Unknown', reach.reason, 'the launcher cannot be heard');
  if (input.launcher?.guestAgent.connected === true && (phase === 'Running' || phase === 'Paused' || phase === 'Migrating')) {
    return condition('AgentConnected', 'True', 'AgentConnected', `the guest agent ${input.launcher.guestAgent.version ?? ''} answers`.replace('  ', ' '));
  }
  return condition('AgentConnected', 'False', 'AgentNotConnected', phase === 'Running' ? 'the guest agent does not answer yet' : 'the guest is not running');
}

function migratableCondition(input: StatusInput): Omit<Condition, 'lastTransitionTime'> {
  return liveMigratableCondition(input.notMigratable);
}

function withTransitions(previous: readonly Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime'>[], now: string, generation: number | undefined): Condition[] {
  return next
    .sort((a, b) => CONDITION_ORDER.indexOf(a.type as (typeof CONDITION_ORDER)[number]) - CONDITION_ORDER.indexOf(b.type as (typeof CONDITION_ORDER)[number]))
    .map((c) => {
      const old = previous?.find((p) => p.type === c.type);
      const lastTransitionTime = old !== undefined && old.status === c.status ? old.lastTransitionTime : now;
      return { ...c, lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
    });
}

function interfaces(input: StatusInput): VirtualMachineInterfaceStatus[] | undefined {
  const guest = (input.launcher?.guest.interfaces ?? []).filter((i) => i.name !== 'lo');
  const spec = input.vm.spec.template.interfaces;
  if (spec.length === 0 || (guest.length === 0 && input.pod?.status?.podIP === undefined)) return undefined;
  return spec.map((iface, index) => {
    const mac = iface.macAddress?.toLowerCase();
    const seen = guest.find((g) => mac !== undefined && g.macAddress?.toLowerCase() === mac) ?? guest[index];
    const guestIps = (seen?.ipAddresses ?? []).filter((a) => a.family === 'ipv4').map((a) => a.address);
    const allIps = (seen?.ipAddresses ?? []).map((a) => a.address);
    const primary = iface.binding === 'masquerade' ? input.pod?.status?.podIP : guestIps[0];
    return {
      name: iface.name,
      ...(seen?.macAddress !== undefined || mac !== undefined ? { macAddress: seen?.macAddress ?? mac } : {}),
      ...(primary !== undefined ? { ipAddress: primary } : {}),
      ...(allIps.length > 0 ? { ipAddresses: allIps } : {}),
      ...(seen !== undefined ? { interfaceName: seen.name } : {}),
    };
  });
}

function guestOsInfo(launcher: LauncherStatus | undefined): VirtualMachineStatus['guestOSInfo'] {
  const os = launcher?.guest.os;
  if (os === undefined) return undefined;
  return { ...os, ...(launcher?.guest.hostName !== undefined ? { hostname: launcher.guest.hostName } : {}) };
}

/** status.migrationState: what the VM's newest migration says about it. */
export function migrationStateOf(migration: VirtualMachineMigration | undefined, previous: VirtualMachineMigrationState | undefined): VirtualMachineMigrationState | undefined {
  const st = migration?.status;
  if (migration === undefined || st?.phase === undefined || st.phase === 'Pending') return previous;
  const result = st.phase === 'Succeeded' || st.phase === 'Failed' || st.phase === 'Cancelled' ? st.phase : undefined;
  return {
    migrationName: migration.metadata.name,
    ...(st.sourceNode !== undefined ? { sourceNode: st.sourceNode } : {}),
    ...(st.targetNode !== undefined ? { targetNode: st.targetNode } : {}),
    ...(st.sourcePod !== undefined ? { sourcePod: st.sourcePod } : {}),
    ...(st.targetPod !== undefined ? { targetPod: st.targetPod } : {}),
    ...(st.mode !== undefined ? { mode: st.mode } : {}),
    ...(st.startTime !== undefined ? { startTime: st.startTime } : {}),
    ...(st.endTime !== undefined ? { endTime: st.endTime } : {}),
    ...(result !== undefined ? { result, completed: result === 'Succeeded', failed: result !== 'Succeeded' } : {}),
  };
}

/** What the launcher reports comes from the guest: only a bounded copy reaches the status. */
function withBoundedLauncher(input: StatusInput): StatusInput {
  return input.launcher === undefined ? input : { ...input, launcher: boundLauncherStatus(input.launcher) };
}

function conditionsOf(input: StatusInput, phase: VirtualMachinePhase, launcher: LauncherStatus | undefined): Omit<Condition, 'lastTransitionTime'>[] {
  return [
    readyCondition(input, phase),
    agentCondition({ ...input, launcher }, phase),
    migratableCondition(input),
    phase === 'Paused'
      ? condition('Paused', 'True', input.launcher?.reason ?? 'Paused', 'the guest is paused')
      : condition('Paused', 'False', 'NotPaused', 'the guest is not paused'),
    ...(input.highAvailability === undefined ? [] : [input.highAvailability]),
  ];
}

/** The whole status the operator writes. */
export function computeStatus(observed: StatusInput): VirtualMachineStatus {
  const input = withBoundedLauncher(observed);
  const phase = phaseOf(input);
  const active = input.podState.kind === 'active';
  const launcher = active ? input.launcher : undefined;
  const os = guestOsInfo(launcher);
  const conds = conditionsOf(input, phase, launcher);
  const ifaces = active ? interfaces({ ...input, launcher }) : undefined;
  const migrationState = migrationStateOf(input.migration, input.vm.status?.migrationState);
  return {
    phase,
    ready: phase === 'Running',
    conditions: withTransitions(input.vm.status?.conditions, conds, input.now, input.vm.metadata.generation),
    ...(active && input.pod?.spec.nodeName !== undefined ? { nodeName: input.pod.spec.nodeName } : {}),
    ...(input.podState.kind !== 'none' && input.pod !== undefined ? { launcherPod: input.pod.metadata.name } : {}),
    ...(launcher !== undefined ? { accelerator: launcher.accelerator } : {}),
    ...(ifaces !== undefined ? { interfaces: ifaces } : {}),
    ...(os !== undefined ? { guestOSInfo: os } : {}),
    ...(migrationState !== undefined ? { migrationState } : {}),
    ...(input.restartCount !== undefined ? { restartCount: input.restartCount } : {}),
    ...(input.startFailure !== undefined ? { startFailure: input.startFailure } : {}),
    ...(input.vm.metadata.generation !== undefined ? { observedGeneration: input.vm.metadata.generation } : {}),
  };
}

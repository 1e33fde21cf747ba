// The migration's phase machine as pure functions of what the controller observed: the
// VM, the source and target pods, and what the two launchers say (docs/adr/0080).
//   Pending → Scheduling → PreparingTarget → TargetReady → Running → Succeeded | Failed | Cancelled
// Every verdict depends only on the facts passed in, so a restarted operator that reads
// the same world takes the same step.
import type { MigrationPhase } from '@keyvirt/crds';
import type { IncomingMigrationPhase, MigrationResult } from '@keyvirt/launcher/api';

export const ACTIVE_PHASES: readonly MigrationPhase[] = ['Scheduling', 'PreparingTarget', 'TargetReady', 'Running'];

export function isFinal(phase: MigrationPhase | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed' || phase === 'Cancelled';
}

/** What the controller knows about the VM when a migration waits in Pending. */
export interface VmFacts {
  readonly deleting: boolean;
  readonly phase: string | undefined;
  /** The LiveMigratable condition, when the VM controller has written one. */
  readonly liveMigratable: { readonly status: string; readonly message: string } | undefined;
  /** The VM's launcher pod is active (not finished) and no migration hands it over. */
  readonly launcherActive: boolean;
  /**
   * Launcher pods hand the VM over: a target or replacement not promoted yet, or a second
   * active launcher (the source of a migration that just succeeded, still ending).
   */
  readonly handOver: boolean;
}

export type Verdict =
  | { readonly kind: 'proceed' }
  | { readonly kind: 'wait'; readonly reason: string; readonly message: string }
  | { readonly kind: 'fail'; readonly reason: string; readonly message: string };

const TRANSIENT_VM_PHASES = new Set(['Scheduling', 'Starting', 'Migrating']);

/** Pending: may the migration take its slot and schedule a target? */
export function pendingVerdict(vm: VmFacts | undefined, earlierMigration: string | undefined, admission: { admitted: true } | { admitted: false; reason: string }): Verdict {
  if (vm === undefined) return { kind: 'fail', reason: 'VMNotFound', message: 'the VirtualMachine does not exist' };
  if (vm.deleting) return { kind: 'fail', reason: 'VMDeleting', message: 'the VirtualMachine is being deleted' };
  if (vm.liveMigratable?.status === 'False') return { kind: 'fail', reason: 'NotLiveMigratable', message: vm.liveMigratable.message };
  if (earlierMigration !== undefined) {
    return { kind: 'wait', reason: 'AnotherMigrationInProgress', message: `migration ${earlierMigration} of this VM has not finished` };
  }
  // Whatever the VM's phase says, its launcher is changing hands (an earlier migration
  // ended but its source pod still ends): the next one starts from the launcher that stays.
  if (vm.handOver) return { kind: 'wait', reason: 'LauncherHandOver', message: 'the VM is being handed over between launcher pods' };
  if (vm.phase !== 'Running' || !vm.launcherActive) {
    const message = `the VM is ${vm.phase ?? 'not running'}`;
    return TRANSIENT_VM_PHASES.has(vm.phase ?? '') ? { kind: 'wait', reason: 'VMNotRunning', message } : { kind: 'fail', reason: 'VMNotRunning', message };
  }
  if (vm.liveMigratable === undefined) return { kind: 'wait', reason: 'LiveMigratableUnknown', message: 'the VM controller has not assessed the VM yet' };
  if (!admission.admitted) return { kind: 'wait', reason: 'ParallelLimit', message: admission.reason };
  return { kind: 'proceed' };
}

export type PodFacts = 'none' | 'pending' | 'running' | 'finished' | 'terminating';

/** What the source launcher says about this migration. */
export type SourceFacts =
  | { readonly kind: 'unreachable' }
  /** The launcher runs no migration with this migration's id. */
  | { readonly kind: 'none' }
  | { readonly kind: 'running'; readonly postCopy: boolean }
  | { readonly kind: 'ended'; readonly result: MigrationResult };

export type TargetFacts = { readonly kind: 'unreachable' } | { readonly kind: 'none' } | { readonly kind: 'incoming'; readonly phase: IncomingMigrationPhase };

export type RunStep =
  /** The VM runs on the target: promote it and finish. */
  | { readonly kind: 'succeeded'; readonly result: MigrationResult | undefined }
  | { readonly kind: 'failed'; readonly reason: string; readonly message: string }
  | { readonly kind: 'cancelled'; readonly message: string }
  /** Ask the source to cancel (the target is gone, or the migration object is being deleted). */
  | { readonly kind: 'cancel-source'; readonly why: string }
  | { readonly kind: 'running' }
  /** Not enough is known yet (a launcher does not answer): look again shortly. */
  | { readonly kind: 'wait'; readonly message: string };

function ended(result: MigrationResult, deleting: boolean): RunStep {
  if (result.phase === 'Succeeded') return { kind: 'succeeded', result };
  if (result.phase === 'Cancelled' && deleting) return { kind: 'cancelled', message: 'the migration was cancelled; the VM runs on at the source' };
  if (result.postCopy && !result.sourceRunning) {
    return { kind: 'failed', reason: 'PostCopyFailed', message: result.message ?? 'the post-copy migration broke; the guest cannot run on either side' };
  }
  return { kind: 'failed', reason: result.reason ?? 'MigrationFailed', message: result.message ?? `the migration ended ${result.phase}; the VM runs on at the source` };
}

/**
 * Running (and TargetReady after the source was asked to start): the outcome from the
 * source's answer first; when the source can no longer tell (its launcher exited after
 * handing the VM over, or the operator restarted after that), from the target's.
 */
export function runStep(f: { deleting: boolean; sourcePod: PodFacts; targetPod: PodFacts; source: SourceFacts; target: TargetFacts }): RunStep {
  const { source, target } = f;
  if (source.kind === 'ended') return ended(source.result, f.deleting);
  const targetGone = f.targetPod === 'none' || f.targetPod === 'finished' || f.targetPod === 'terminating';
  if (source.kind === 'running') {
    if (source.postCopy) return { kind: 'running' };
    if (targetGone) return { kind: 'cancel-source', why: 'the target pod is gone' };
    if (f.deleting) return { kind: 'cancel-source', why: 'the migration is being deleted' };
    return { kind: 'running' };
  }
  if (target.kind === 'incoming' && target.phase === 'Succeeded') return { kind: 'succeeded', result: undefined };
  const sourceGone = f.sourcePod === 'none' || f.sourcePod === 'finished';
  if (target.kind === 'incoming' && target.phase === 'Failed') {
    return sourceGone
      ? { kind: 'failed', reason: 'SourceAndTargetFailed', message: 'the source launcher is gone and the target did not receive the VM' }
      : { kind: 'failed', reason: 'TargetFailed', message: 'the target did not receive the VM; it runs on at the source' };
  }
  if (source.kind === 'none' && !sourceGone) {
    return f.deleting
      ? { kind: 'cancelled', message: 'the migration was cancelled before it started' }
      : { kind: 'failed', reason: 'SourceLostMigration', message: 'the source launcher runs no migration with this id' };
  }
  if (sourceGone && targetGone) return { kind: 'failed', reason: 'LaunchersGone', message: 'neither the source nor the target launcher runs the VM' };
  return { kind: 'wait', message: source.kind === 'unreachable' ? 'the source launcher does not answer' : 'waiting for the target launcher to report' };
}

/** The target pod's phase as the phase machine needs it. */
export function podFacts(pod: { metadata: { deletionTimestamp?: string | undefined }; status?: { phase?: string | undefined } | undefined } | undefined): PodFacts {
  if (pod === undefined) return 'none';
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return 'finished';
  if (pod.metadata.deletionTimestamp !== undefined) return 'terminating';
  return phase === 'Running' ? 'running' : 'pending';
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationResult } from '@keyvirt/launcher/api';
import { pendingVerdict, runStep, type PodFacts, type SourceFacts, type TargetFacts, type VmFacts } from './phases.ts';

const runningVm: VmFacts = { deleting: false, phase: 'Running', liveMigratable: { status: 'True', message: 'ok' }, launcherActive: true, handOver: false };
const admitted = { admitted: true } as const;

void describe('pendingVerdict', () => {
  const cases: { name: string; vm: VmFacts | undefined; earlier?: string; admission?: { admitted: true } | { admitted: false; reason: string }; want: string }[] = [
    { name: 'a running, migratable VM within the limits proceeds', vm: runningVm, want: 'proceed' },
    { name: 'no VM fails', vm: undefined, want: 'fail VMNotFound' },
    { name: 'a VM being deleted fails', vm: { ...runningVm, deleting: true }, want: 'fail VMDeleting' },
    { name: 'LiveMigratable False fails at once with its message', vm: { ...runningVm, liveMigratable: { status: 'False', message: 'disk data is not ReadWriteMany' } }, want: 'fail NotLiveMigratable' },
    { name: 'not migratable beats not running', vm: { ...runningVm, phase: 'Stopped', liveMigratable: { status: 'False', message: 'x' } }, want: 'fail NotLiveMigratable' },
    { name: 'an earlier migration of the VM makes it wait', vm: runningVm, earlier: 'm-0', want: 'wait AnotherMigrationInProgress' },
    { name: 'a starting VM makes it wait', vm: { ...runningVm, phase: 'Starting' }, want: 'wait VMNotRunning' },
    { name: 'a stopped VM fails', vm: { ...runningVm, phase: 'Stopped', launcherActive: false }, want: 'fail VMNotRunning' },
    { name: 'a migrating VM whose launcher is handed over waits', vm: { ...runningVm, phase: 'Migrating', launcherActive: false }, want: 'wait VMNotRunning' },
    {
      name: 'a Running VM whose earlier migration just ended, its source pod still ending, waits',
      vm: { ...runningVm, launcherActive: false, handOver: true },
      want: 'wait LauncherHandOver',
    },
    { name: 'no LiveMigratable condition yet waits', vm: { ...runningVm, liveMigratable: undefined }, want: 'wait LiveMigratableUnknown' },
    { name: 'the parallel limit makes it wait with the reason', vm: runningVm, admission: { admitted: false, reason: '2 migrations already leave node a' }, want: 'wait ParallelLimit' },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const v = pendingVerdict(c.vm, c.earlier, c.admission ?? admitted);
      assert.equal(v.kind === 'proceed' ? 'proceed' : `${v.kind} ${v.reason}`, c.want);
    });
  }
});

function result(phase: MigrationResult['phase'], extra: Partial<MigrationResult> = {}): MigrationResult {
  return {
    migrationId: 'uid',
    phase,
    totalTimeMs: 300,
    downtimeMs: 20,
    setupTimeMs: 5,
    guestPauseMs: 30,
    sourceStoppedAtMicros: null,
    targetResumedAtMicros: null,
    transferredBytes: 100,
    iterations: 3,
    postCopy: false,
    sourceRunning: phase !== 'Succeeded',
    ...extra,
  };
}

void describe('runStep', () => {
  const unreachable: TargetFacts = { kind: 'unreachable' };
  const cases: { name: string; deleting?: boolean; sourcePod?: PodFacts; targetPod?: PodFacts; source: SourceFacts; target?: TargetFacts; want: string }[] = [
    { name: 'the source reports success', source: { kind: 'ended', result: result('Succeeded') }, want: 'succeeded' },
    { name: 'the source reports a failure: Failed with its reason', source: { kind: 'ended', result: result('Failed', { reason: 'ProgressTimeout' }) }, want: 'failed ProgressTimeout' },
    { name: 'a cancel the deletion asked for', deleting: true, source: { kind: 'ended', result: result('Cancelled') }, want: 'cancelled' },
    { name: 'a broken post-copy that left the source stopped', source: { kind: 'ended', result: result('Failed', { postCopy: true, sourceRunning: false }) }, want: 'failed PostCopyFailed' },
    { name: 'copy running, both pods up', source: { kind: 'running', postCopy: false }, want: 'running' },
    { name: 'copy running, the target pod gone: cancel at the source', targetPod: 'none', source: { kind: 'running', postCopy: false }, want: 'cancel-source' },
    { name: 'copy running, the object deleted: cancel at the source', deleting: true, source: { kind: 'running', postCopy: false }, want: 'cancel-source' },
    { name: 'post-copy running is never cancelled', deleting: true, source: { kind: 'running', postCopy: true }, want: 'running' },
    {
      name: 'restart after the hand-over: the source exited, the target received the VM',
      sourcePod: 'finished',
      source: { kind: 'unreachable' },
      target: { kind: 'incoming', phase: 'Succeeded' },
      want: 'succeeded',
    },
    { name: 'the target failed to receive, the source runs on', source: { kind: 'unreachable' }, target: { kind: 'incoming', phase: 'Failed' }, want: 'failed TargetFailed' },
    { name: 'the source runs no migration of this id', source: { kind: 'none' }, target: unreachable, want: 'failed SourceLostMigration' },
    { name: 'the source runs none and the object is deleted: cancelled', deleting: true, source: { kind: 'none' }, target: unreachable, want: 'cancelled' },
    { name: 'a source that does not answer and a target still receiving: wait', source: { kind: 'unreachable' }, target: { kind: 'incoming', phase: 'Receiving' }, want: 'wait' },
    { name: 'both pods finished and nobody can say: failed', sourcePod: 'finished', targetPod: 'finished', source: { kind: 'unreachable' }, target: unreachable, want: 'failed LaunchersGone' },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const step = runStep({ deleting: c.deleting ?? false, sourcePod: c.sourcePod ?? 'running', targetPod: c.targetPod ?? 'running', source: c.source, target: c.target ?? unreachable });
      assert.equal(step.kind === 'failed' ? `failed ${step.reason}` : step.kind, c.want);
    });
  }
});

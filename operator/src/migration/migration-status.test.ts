import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MigrationProgress } from '@keyvirt/launcher/api';
import { progressOf, progressingCondition, resultFields, withPhase } from './migration-status.ts';

const MiB = 1024 * 1024;

function report(p: Partial<MigrationProgress>): MigrationProgress {
  return {
    migrationId: 'uid',
    phase: 'Running',
    qemuStatus: 'active',
    elapsedMs: 1000,
    iteration: 1,
    transferredBytes: 0,
    remainingBytes: 0,
    totalBytes: 256 * MiB,
    dirtyRateBytesPerSecond: 0,
    throughputBytesPerSecond: 0,
    downtimeLimitMs: 100,
    cpuThrottlePercent: 0,
    postCopy: false,
    ...p,
  };
}

void describe('progressOf', () => {
  const cases: { name: string; p: Partial<MigrationProgress>; percent: number; mode: string }[] = [
    { name: 'nothing copied yet', p: { remainingBytes: 256 * MiB }, percent: 0, mode: 'PreCopy' },
    { name: 'a quarter left', p: { remainingBytes: 64 * MiB, transferredBytes: 192 * MiB }, percent: 75, mode: 'PreCopy' },
    { name: 'remaining above total (QEMU counts pages twice in a pass): 0, never negative', p: { remainingBytes: 300 * MiB }, percent: 0, mode: 'PreCopy' },
    { name: 'an unknown total: 0', p: { totalBytes: 0, remainingBytes: 10 }, percent: 0, mode: 'PreCopy' },
    { name: 'post-copy', p: { remainingBytes: 0, postCopy: true }, percent: 100, mode: 'PostCopy' },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const out = progressOf(report(c.p), Date.parse('2026-01-01T00:00:00Z'));
      assert.equal(out.percent, c.percent);
      assert.equal(out.mode, c.mode);
      assert.equal(out.updateTime, '2026-01-01T00:00:00Z');
    });
  }
});

void describe('migration status builders', () => {
  void it('the end figures of a success: downtime, total, pause, 100 percent', () => {
    const fields = resultFields(
      {
        migrationId: 'uid',
        phase: 'Succeeded',
        totalTimeMs: 420,
        downtimeMs: 27,
        setupTimeMs: 3,
        guestPauseMs: 31.6,
        sourceStoppedAtMicros: null,
        targetResumedAtMicros: null,
        transferredBytes: 100 * MiB,
        iterations: 4,
        postCopy: false,
        sourceRunning: false,
      },
      { percent: 80, transferredBytes: 90 * MiB, remainingBytes: 20 * MiB },
    );
    assert.deepEqual(fields, {
      mode: 'PreCopy',
      downtimeMs: 27,
      totalTimeMs: 420,
      guestPauseMs: 32,
      progress: { percent: 100, transferredBytes: 100 * MiB, remainingBytes: 0, iteration: 4 },
    });
  });

  void it('the phase transition time moves only with the phase', () => {
    const a = withPhase(undefined, 'Scheduling', 't1');
    assert.equal(withPhase(a, 'Scheduling', 't2').phaseTransitionTime, 't1');
    assert.equal(withPhase(a, 'PreparingTarget', 't3').phaseTransitionTime, 't3');
  });

  void it('the Progressing condition keeps its transition time while its status holds', () => {
    const first = progressingCondition(undefined, { status: 'False', reason: 'ParallelLimit', message: 'two leave node a' }, 't1', 1);
    const again = progressingCondition(first, { status: 'False', reason: 'VMNotRunning', message: 'starting' }, 't2', 1);
    assert.equal(again[0]?.lastTransitionTime, 't1');
    assert.equal(progressingCondition(again, { status: 'True', reason: 'Scheduling', message: '' }, 't3', 1)[0]?.lastTransitionTime, 't3');
  });
});

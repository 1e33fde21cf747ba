import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MigrationPolicySchema, type MigrationPolicyInput } from '../api/migration.ts';
import { ConvergenceSchedule, type ConvergenceAction, type ConvergenceSample } from './convergence.ts';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

function schedule(policy: MigrationPolicyInput = {}): ConvergenceSchedule {
  return new ConvergenceSchedule(MigrationPolicySchema.parse(policy));
}

function sample(over: Partial<ConvergenceSample>): ConvergenceSample {
  return { elapsedMs: 0, status: 'active', iteration: 1, remainingBytes: 0, totalBytes: GiB, ...over };
}

/** Feeds one boundary sample per iteration with the given remaining MiB; collects the actions. */
function iterate(s: ConvergenceSchedule, remainingMiB: readonly number[], stepMs = 100): ConvergenceAction[] {
  const out: ConvergenceAction[] = [];
  remainingMiB.forEach((mib, i) => {
    out.push(...s.observe(sample({ iteration: i + 1, remainingBytes: mib * MiB, elapsedMs: (i + 1) * stepMs })));
  });
  return out;
}

void describe('ConvergenceSchedule', () => {
  void it('starts at the first step of the default oVirt schedule', () => {
    assert.equal(schedule().initialDowntimeMs(), 100);
    assert.equal(schedule({ downtimeScheduleMs: [300] }).initialDowntimeMs(), 300);
  });

  void it('does nothing while every iteration reaches a new low', () => {
    const s = schedule();
    assert.deepEqual(iterate(s, [1024, 200, 100, 50, 10]), []);
    assert.equal(s.currentDowntimeMs(), 100);
  });

  void it('raises the downtime one step per stalled iteration through the whole schedule', () => {
    const s = schedule({ stalledIterationsPerStep: 1 });
    const actions = iterate(s, [1024, 64, 64, 70, 64, 80, 90]);
    assert.deepEqual(
      actions.map((a) => (a.kind === 'setDowntime' ? a.downtimeMs : a.kind)),
      [150, 200, 300, 400, 500],
    );
    assert.equal(s.stalledIterations(), 5);
    assert.equal(s.currentDowntimeMs(), 500);
    // Exhausted schedule, no post-copy: nothing more to do until a timeout.
    assert.deepEqual(iterate(s, [1024, 64, 64, 70, 64, 80, 90, 99]).slice(-1), []);
  });

  void it('needs two stalls per step by default, as the CRD defaults stallIterations', () => {
    const s = schedule();
    const actions = iterate(s, [1024, 64, 64, 64, 64, 64]);
    assert.deepEqual(
      actions.map((a) => (a.kind === 'setDowntime' ? a.downtimeMs : a.kind)),
      [150, 200],
    );
  });

  void it('switches to post-copy once the schedule is exhausted when allowed', () => {
    const s = schedule({ postCopy: true, downtimeScheduleMs: [100, 150, 200], stalledIterationsPerStep: 1 });
    const actions = iterate(s, [1024, 64, 64, 64, 64, 64]);
    assert.deepEqual(actions, [
      { kind: 'setDowntime', downtimeMs: 150, stalledIterations: 1 },
      { kind: 'setDowntime', downtimeMs: 200, stalledIterations: 2 },
      { kind: 'startPostCopy', cause: 'DowntimeScheduleExhausted' },
    ]);
    assert.equal(s.postCopyRequested(), true);
  });

  void it('aborts after the completion timeout per GiB without post-copy', () => {
    const s = schedule({ completionTimeoutPerGiBSeconds: 4 });
    // 256 MiB of guest memory → 1 s allowed.
    const total = 256 * MiB;
    assert.deepEqual(s.observe(sample({ elapsedMs: 900, totalBytes: total, remainingBytes: 10 * MiB })), []);
    const actions = s.observe(sample({ elapsedMs: 1001, totalBytes: total, remainingBytes: 9 * MiB }));
    assert.equal(actions.length, 1);
    assert.equal(actions[0]?.kind, 'abort');
    assert.equal(actions[0]?.kind === 'abort' ? actions[0].reason : '', 'CompletionTimeout');
    // Terminal: no further actions after an abort.
    assert.deepEqual(s.observe(sample({ elapsedMs: 2000, totalBytes: total })), []);
  });

  void it('switches to post-copy instead of aborting at the completion timeout when allowed', () => {
    const s = schedule({ completionTimeoutPerGiBSeconds: 4, postCopy: true });
    const actions = s.observe(sample({ elapsedMs: 1100, totalBytes: 256 * MiB, remainingBytes: MiB }));
    assert.deepEqual(actions, [{ kind: 'startPostCopy', cause: 'CompletionTimeout' }]);
    assert.deepEqual(s.observe(sample({ elapsedMs: 5000, totalBytes: 256 * MiB, remainingBytes: MiB })), []);
  });

  void it('aborts on the progress timeout when remaining data stops shrinking', () => {
    const s = schedule({ progressTimeoutSeconds: 1, completionTimeoutPerGiBSeconds: 1000 });
    assert.deepEqual(s.observe(sample({ elapsedMs: 100, remainingBytes: 50 * MiB })), []);
    assert.deepEqual(s.observe(sample({ elapsedMs: 600, remainingBytes: 40 * MiB })), []);
    assert.deepEqual(s.observe(sample({ elapsedMs: 1500, remainingBytes: 40 * MiB })), []);
    const actions = s.observe(sample({ elapsedMs: 1700, remainingBytes: 45 * MiB }));
    assert.equal(actions[0]?.kind === 'abort' ? actions[0].reason : '', 'ProgressTimeout');
  });

  void it('counts a new iteration as progress even when remaining data grew', () => {
    const s = schedule({ progressTimeoutSeconds: 1, completionTimeoutPerGiBSeconds: 1000 });
    s.observe(sample({ elapsedMs: 100, iteration: 1, remainingBytes: 50 * MiB }));
    s.observe(sample({ elapsedMs: 1000, iteration: 2, remainingBytes: 60 * MiB }));
    assert.deepEqual(s.observe(sample({ elapsedMs: 1900, iteration: 2, remainingBytes: 60 * MiB })), []);
  });

  void it('takes no action outside the active phase', () => {
    const s = schedule({ completionTimeoutPerGiBSeconds: 1 });
    assert.deepEqual(s.observe(sample({ status: 'setup', elapsedMs: 10_000 })), []);
    assert.deepEqual(s.observe(sample({ status: 'postcopy-active', elapsedMs: 10_000 })), []);
  });

  void it('computes the completion timeout from fractional GiB', () => {
    const s = schedule({ completionTimeoutPerGiBSeconds: 150 });
    assert.equal(s.completionTimeoutMs(GiB), 150_000);
    assert.equal(s.completionTimeoutMs(256 * MiB), 37_500);
  });
});

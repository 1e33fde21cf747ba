import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachineMigration, type VirtualMachineMigrationStatus } from '@keyvirt/crds';
import type { MigrationProgress } from '@keyvirt/launcher/api';
import { pino } from 'pino';
import { KubeApiError } from '../runtime/kube-client.ts';
import { MigrationStatusWriter, progressOf, progressingCondition, resultFields, withPhase } from './migration-status.ts';
import { StatusSubresourceFake } from '../runtime/status-subresource-fake.ts';

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

/** One migration on a fake API server with its optimistic concurrency: every write bumps resourceVersion; a stale precondition is 409. */
class MigrationObject extends StatusSubresourceFake<VirtualMachineMigrationStatus, VirtualMachineMigration> {
  readonly uid: string;

  constructor(uid = 'mig-uid') {
    super(30);
    this.uid = uid;
  }

  override cached(): VirtualMachineMigration {
    return VirtualMachineMigration.parse({
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachineMigration',
      metadata: { name: 'move', namespace: 'prod', uid: this.uid, resourceVersion: String(this.resourceVersion) },
      spec: { vmName: 'web-1' },
      ...(this.status === undefined ? {} : { status: this.status }),
    });
  }
}

const silent = pino({ level: 'silent' });
const noEvents = { record: (): Promise<void> => Promise.resolve() };

void describe('MigrationStatusWriter (optimistic concurrency)', () => {
  void it('guards each write with the version it was computed from, its own unseen write included', async () => {
    const api = new MigrationObject();
    const writer = new MigrationStatusWriter(api, noEvents);
    const stale = api.cached();
    await writer.write(stale, { phase: 'Scheduling' }, silent);
    // The cache still shows version 30: the next write names the version the first one answered with.
    await writer.write(stale, { phase: 'PreparingTarget' }, silent);
    assert.deepEqual(api.preconditions, ['30', '31']);
    assert.deepEqual(writer.current(stale), { phase: 'PreparingTarget' });
    // Once the cache shows the write, the cache is the source again and nothing is written.
    await writer.write(api.cached(), { phase: 'PreparingTarget' }, silent);
    assert.equal(api.preconditions.length, 2);
    assert.equal(writer.remembered, 0);
  });

  void it('a status computed from a stale view gets 409, leaves the newer status, and goes through once retried from the cache', async () => {
    const api = new MigrationObject();
    const writer = new MigrationStatusWriter(api, noEvents);
    const seen = api.cached();
    // A deposed leader's late write, or anyone else's, moved the object on.
    await api.patch('/status', [{ op: 'add', path: '/status', value: { phase: 'Cancelled' } }]);
    await assert.rejects(writer.write(seen, { phase: 'Running' }, silent), (err: unknown) => err instanceof KubeApiError && err.statusCode === 409);
    assert.deepEqual(api.status, { phase: 'Cancelled' }, 'the newer status was not overwritten');
    assert.equal(writer.remembered, 0, 'a conflicted write is forgotten');
    await writer.write(api.cached(), { phase: 'Failed' }, silent);
    assert.deepEqual(api.status, { phase: 'Failed' });
  });

  void it('a migration recreated under the same name does not inherit the old one\'s write; a final phase in the cache ends the memory', async () => {
    const old = new MigrationObject('old-uid');
    const writer = new MigrationStatusWriter(old, noEvents);
    await writer.write(old.cached(), { phase: 'Running' }, silent);
    const recreated = new MigrationObject('new-uid');
    assert.equal(writer.current(recreated.cached()), undefined);
    assert.equal(writer.remembered, 0);

    await writer.write(old.cached(), { phase: 'Succeeded' }, silent);
    assert.equal(writer.remembered, 1);
    // The cache shows a final phase (whatever it carries beside): nothing more is ever written, nothing kept.
    const final = VirtualMachineMigration.parse({ ...old.cached(), status: { phase: 'Succeeded', downtimeMs: 12 } });
    assert.deepEqual(writer.current(final), { phase: 'Succeeded', downtimeMs: 12 });
    assert.equal(writer.remembered, 0);

    await writer.write(old.cached(), { phase: 'Failed' }, silent);
    writer.forget('prod/move');
    assert.equal(writer.remembered, 0);
  });
});

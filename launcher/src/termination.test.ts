// The termination sequence against fakes of the VM and its migrations (the real
// thing, with QEMU, runs in test/migration/live-migration.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { MigrationResult } from './api/migration.ts';
import type { LauncherPhase } from './api/status.ts';
import { terminate, type TerminatingMigrations, type TerminatingVm } from './termination.ts';

const silent = pino({ level: 'silent' });

class FakeVm implements TerminatingVm {
  phase: LauncherPhase = 'Running';
  qemuAlive = false;
  readonly calls: string[] = [];
  refuseShutdown = false;
  shutdown(gracePeriodMs: number): Promise<void> {
    this.calls.push(`shutdown ${gracePeriodMs}`);
    if (this.refuseShutdown) return Promise.reject(new Error(`cannot shutdown a VM in phase ${this.phase}`));
    this.phase = 'Stopping';
    return Promise.resolve();
  }
  powerOff(reason = 'PoweredOff', outcome: 'Stopped' | 'Failed' = 'Stopped'): Promise<void> {
    this.calls.push(`powerOff ${reason} ${outcome}`);
    this.phase = 'Stopping';
    return Promise.resolve();
  }
}

function result(phase: MigrationResult['phase'], sourceRunning: boolean, postCopy: boolean): MigrationResult {
  return {
    migrationId: 'm-1',
    phase,
    totalTimeMs: 1000,
    downtimeMs: null,
    setupTimeMs: 10,
    guestPauseMs: null,
    sourceStoppedAtMicros: null,
    targetResumedAtMicros: null,
    transferredBytes: 1,
    iterations: 1,
    postCopy,
    sourceRunning,
  };
}

/** A migration that ends with `outcome` when settled; cancellable unless in post-copy. */
function migrations(vm: FakeVm, outcome: MigrationResult, postCopy: boolean): TerminatingMigrations & { cancels: number } {
  let current: MigrationResult | null = null;
  const m = {
    cancels: 0,
    outgoing: {
      get result(): MigrationResult | null {
        return current;
      },
      cancel: (): boolean => {
        if (postCopy) return false;
        m.cancels += 1;
        return true;
      },
    },
    settled: (): Promise<MigrationResult> => {
      current = outcome;
      // What the controller does on settling: the source runs again, or the hand-off ends it.
      vm.phase = outcome.phase === 'Succeeded' ? 'Stopped' : outcome.sourceRunning ? 'Running' : 'Paused';
      return Promise.resolve(outcome);
    },
  };
  return m;
}

function terminateIn30s(vm: FakeVm, m: TerminatingMigrations): Promise<void> {
  return terminate({ vm, migrations: m, gracePeriodMs: 30_000, logger: silent, nowMs: () => 0 });
}

describe('terminate', () => {
  it('shuts a VM without a migration down gracefully with the whole grace period', async () => {
    const vm = new FakeVm();
    await terminateIn30s(vm, { outgoing: undefined, settled: () => Promise.resolve(undefined) });
    assert.deepEqual(vm.calls, ['shutdown 30000']);
  });

  it('cancels a pre-copy migration first, then shuts the VM down with what is left of the grace period', async () => {
    const vm = new FakeVm();
    vm.phase = 'Migrating';
    const m = migrations(vm, result('Cancelled', true, false), false);
    let now = 0;
    const settled = m.settled.bind(m);
    m.settled = () => {
      now = 4000;
      return settled();
    };
    await terminate({ vm, migrations: m, gracePeriodMs: 30_000, logger: silent, nowMs: () => now });
    assert.equal(m.cancels, 1);
    assert.deepEqual(vm.calls, ['shutdown 26000']);
  });

  it('lets a post-copy migration finish and leaves the hand-off to end the launcher', async () => {
    const vm = new FakeVm();
    vm.phase = 'Migrating';
    const m = migrations(vm, result('Succeeded', false, true), true);
    await terminateIn30s(vm, m);
    assert.equal(m.cancels, 0);
    assert.deepEqual(vm.calls, []);
  });

  it('reports a post-copy migration that breaks while terminating as a failed VM', async () => {
    const vm = new FakeVm();
    vm.phase = 'Migrating';
    const m = migrations(vm, { ...result('Failed', false, true), reason: 'QemuFailed', message: 'post-copy interrupted' }, true);
    await terminateIn30s(vm, m);
    assert.deepEqual(vm.calls, ['powerOff MigrationFailed Failed']);
  });

  it('a late SIGTERM after a post-copy failure ends the stopped source QEMU, never shuts the guest down here', async () => {
    const vm = new FakeVm();
    vm.phase = 'Failed';
    vm.qemuAlive = true;
    const ended = { ...result('Failed', false, true), reason: 'PostCopyFailed' as const };
    await terminateIn30s(vm, { outgoing: { result: ended, cancel: () => false }, settled: () => Promise.resolve(ended) });
    assert.deepEqual(vm.calls, ['powerOff PostCopyFailed Failed']);
  });

  it('does nothing for a VM whose QEMU is gone', async () => {
    const vm = new FakeVm();
    vm.phase = 'Failed';
    await terminateIn30s(vm, { outgoing: undefined, settled: () => Promise.resolve(undefined) });
    assert.deepEqual(vm.calls, []);
  });

  it('does nothing more when the migration completed before it could be cancelled', async () => {
    const vm = new FakeVm();
    vm.phase = 'Migrating';
    const m = migrations(vm, result('Succeeded', false, false), false);
    await terminateIn30s(vm, m);
    assert.deepEqual(vm.calls, []);
  });

  it('powers off when the graceful shutdown cannot start', async () => {
    const vm = new FakeVm();
    vm.refuseShutdown = true;
    await terminate({ vm, migrations: { outgoing: undefined, settled: () => Promise.resolve(undefined) }, gracePeriodMs: 1000, logger: silent, nowMs: () => 0 });
    assert.deepEqual(vm.calls, ['shutdown 1000', 'powerOff PoweredOff Stopped']);
  });
});

// Deleting the source launcher's pod (SIGTERM) while it migrates the running test guest
// to a target in another network namespace. In pre-copy the migration is cancelled
// first, the guest resumes on its source and then powers off gracefully, as on any pod
// deletion, and the target launcher tears itself down. In post-copy (the target already
// runs the guest) the migration is left to finish: the guest lives on at the target and
// the source launcher exits 0 as Migrated. Either way it is never killed mid-migration.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  assertCounterContinues,
  migrationOutcome,
  startMigration,
  waitForCounter,
  waitForStatus,
  type LauncherProcess,
} from '../support/launcher-process.ts';
import { peerTarget, runningSource } from './migration-pair.ts';
import type { MigrationResult } from '@keyvirt/launcher/api';

const BOOT_TIMEOUT_MS = 240_000;
/** 8 MiB/s keeps a 256 MiB guest migrating (pre-copy or post-copy) for half a minute: long enough to delete the pod midway. */
const SLOW_BANDWIDTH = 8 * 1024 * 1024;

/** The source (its guest counting) and, in a peer namespace, the target of a migration; all removed after `t`. */
async function sourceAndTarget(t: TestContext, name: string): Promise<{ source: LauncherProcess; target: LauncherProcess; bootId: string }> {
  const run = await runningSource(t, { name: `${name}-source`, bootTimeoutMs: BOOT_TIMEOUT_MS, counters: 3 });
  return { source: run.source, target: await peerTarget(t, run, `${name}-target`), bootId: run.bootId };
}

void test('SIGTERM to a migrating source launcher cancels the migration, then shuts the guest down gracefully', { timeout: 900_000 }, async (t) => {
  const { source, target, bootId } = await sourceAndTarget(t, 'deleted');
  await startMigration(source, target, { bandwidthBytesPerSecond: SLOW_BANDWIDTH });
  await waitForStatus(source, (s) => s.phase === 'Migrating', 10_000, 'Migrating');
  const outcome = migrationOutcome(source, 300_000);
  await sleep(2000);
  source.process.kill('SIGTERM');

  const { result } = await outcome;
  assert.equal(result.phase, 'Cancelled', JSON.stringify(result));
  assert.equal(result.sourceRunning, true);
  assert.ok(result.transferredBytes > 0, 'the migration was under way');

  const exit = await source.exited;
  assert.equal(exit.code, 0, source.output());
  const phases = source.logs().filter((l) => l.msg === 'phase changed').map((l) => `${String(l.to)}/${String(l.reason)}`);
  assert.deepEqual(phases.slice(-4), ['Migrating/MigrationRunning', 'Running/MigrationCancelled', 'Stopping/ShutdownRequested', 'Stopped/GuestShutdown']);
  assert.match(await source.serial(), /reboot: Power down/, 'the guest powered itself off');
  assertCounterContinues(await source.counters(), bootId, 'source until it powered off');
  assert.equal((await target.exited).code, 0, 'the target launcher tears itself down');
});

void test('SIGTERM to a source launcher in post-copy lets the migration finish: the VM lives on at the target', { timeout: 900_000 }, async (t) => {
  const { source, target, bootId } = await sourceAndTarget(t, 'postcopy');

  // A completion budget of 1 s per GiB (a quarter second here) switches to post-copy at once.
  await startMigration(source, target, { bandwidthBytesPerSecond: SLOW_BANDWIDTH, postCopy: true, completionTimeoutPerGiBSeconds: 1 });
  let result: MigrationResult | undefined;
  let terminatedInPostCopy = false;
  for await (const event of source.migration.events(AbortSignal.timeout(300_000))) {
    if (event.type === 'progress' && event.progress.qemuStatus === 'postcopy-active' && !terminatedInPostCopy) {
      terminatedInPostCopy = source.process.kill('SIGTERM');
    }
    if (event.type === 'result') {
      result = event.result;
      break;
    }
  }
  assert.ok(terminatedInPostCopy, 'the launcher was terminated during post-copy');
  assert.equal(result?.phase, 'Succeeded', JSON.stringify(result));
  assert.equal(result.postCopy, true);

  const exit = await source.exited;
  assert.equal(exit.code, 0, source.output());
  assert.equal(source.logs().find((l) => l.msg === 'vm ended')?.reason, 'Migrated');
  const running = await waitForStatus(target, (s) => s.phase === 'Running', 60_000, 'Running on the target');
  assert.equal(running.qemu.runState, 'running');
  assertCounterContinues([...(await source.counters()), ...(await waitForCounter(target, 5, 120_000))], bootId, 'source then target');
});

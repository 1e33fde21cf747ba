// Post-copy without split brain, against real launchers and real QEMU (TCG here): a
// migration of the memory-dirtying guest switches to post-copy, then its target
// (launcher and QEMU) is killed mid-post-copy. The source must end Failed with
// reason PostCopyFailed, its QEMU stopped, and no request — resume, pause, reset,
// shutdown — may run the guest there again: its counter never moves on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { LauncherHttpError } from '@keyvirt/launcher/api';
import { createSharedVm, migrationOutcome, processAlive, removeSharedVm, startLauncher, startMigration, waitForCounter, waitForStatus } from '../support/launcher-process.ts';

const BOOT_TIMEOUT_MS = 180_000;
/** Rewrites a 64 MiB working set as fast as the vCPU allows: pre-copy stalls, post-copy takes over. */
const DIRTYING_USER_DATA = '#!/bin/sh\nexec /bin/dirty 100000 64 >/dev/console 2>&1\n';

async function refused(request: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(request, (err: unknown) => err instanceof LauncherHttpError && err.status === 409, `${what} must be refused with 409`);
}

void test('a post-copy migration whose target dies leaves the source Failed/PostCopyFailed and never runs the guest there again', { timeout: 600_000 }, async (t) => {
  const vm = await createSharedVm({ userData: DIRTYING_USER_DATA });
  t.after(() => removeSharedVm(vm));
  const source = await startLauncher({ vm, mode: 'run', name: 'pc-source' });
  t.after(() => source.dispose());
  await waitForStatus(source, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'Running');
  await waitForCounter(source, 3, BOOT_TIMEOUT_MS);
  await source.waitForSerial(/dirty: pid=/, BOOT_TIMEOUT_MS);
  const target = await startLauncher({ vm, mode: 'migration-target', name: 'pc-target' });
  t.after(() => target.dispose());

  // One downtime step and one stalled iteration: post-copy right after the first stall;
  // 16 MiB/s caps the post-copy stream too, so the switched guest depends on the source for seconds.
  await startMigration(source, target, { postCopy: true, downtimeScheduleMs: [100], stalledIterationsPerStep: 1, bandwidthBytesPerSecond: 16 * 1024 * 1024 });
  const outcome = migrationOutcome(source, 300_000);
  const switched = await (async (): Promise<string> => {
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      const current = await source.migration.current();
      if (current.result !== null) return `ended first: ${JSON.stringify(current.result)}`;
      if (current.progress?.postCopy === true) return 'switched';
      await sleep(100);
    }
    return 'no switch within 240 s';
  })();
  assert.equal(switched, 'switched', `the migration switched to post-copy; source log:\n${source.output().slice(-3000)}`);

  const targetQemu = (await target.client.status()).qemu.pid;
  assert.ok(targetQemu !== undefined);
  target.process.kill('SIGKILL');
  process.kill(targetQemu, 'SIGKILL');
  t.diagnostic(`target launcher and QEMU (pid ${targetQemu}) killed during post-copy`);

  const { result } = await outcome;
  assert.equal(result.phase, 'Failed', JSON.stringify(result));
  assert.equal(result.reason, 'PostCopyFailed');
  assert.equal(result.postCopy, true);
  assert.equal(result.sourceRunning, false);
  const failed = await waitForStatus(source, (s) => s.phase === 'Failed', 30_000, 'Failed');
  assert.equal(failed.reason, 'PostCopyFailed');
  const sourceQemu = failed.qemu.pid;
  assert.ok(sourceQemu !== undefined && processAlive(sourceQemu), 'the source QEMU is kept, stopped');
  assert.notEqual(failed.qemu.runState, 'running');

  const counted = (await source.counters()).length;
  for (const action of ['resume', 'pause', 'reset', 'reboot'] as const) await refused(source.client.action(action), action);
  await sleep(3000);
  const still = await source.client.status();
  assert.equal(still.phase, 'Failed');
  assert.equal(still.reason, 'PostCopyFailed');
  assert.notEqual(still.qemu.runState, 'running');
  assert.equal((await source.counters()).length, counted, 'the guest did not run on the source');

  // A shutdown request ends the stopped source QEMU (no `cont`, no ACPI): the VM stays Failed/PostCopyFailed.
  await source.client.action('shutdown');
  const exit = await source.exited;
  assert.equal(exit.code, 1, 'the launcher reports the VM failed');
  assert.ok(!processAlive(sourceQemu), 'the source QEMU is gone');
  assert.equal((await source.counters()).length, counted, 'the guest never ran on the source again');
  const finalPhase = source.logs().find((l) => l.msg === 'vm ended');
  assert.equal(finalPhase?.phase, 'Failed');
  assert.equal(finalPhase.reason, 'PostCopyFailed');
});

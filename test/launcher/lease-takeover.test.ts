// Two real launchers of one highly available VM (real QEMU, TCG, the test guest) on one
// lease file and one disk. The second waits while the first renews; once the first is
// frozen (SIGSTOP of its whole process group, QEMU included) the second takes the
// lease over after L, moves the disk to a new inode and boots. When the first resumes
// it kills its QEMU within about a second, and its guest's records never reach the disk
// the second uses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readDiskRecords } from '../support/guest.ts';
import { createSharedVm, removeSharedVm, startLauncher, waitForCounter, waitForStatus, type LauncherProcess } from '../support/launcher-process.ts';
import { goneAt, inode, L_MS, leaseRecord, R_MS, withLease } from './lease-support.ts';

const BOOT_TIMEOUT_MS = 180_000;

/** For `ms`: the launcher stays Starting without a QEMU, waiting for a holder that keeps renewing. */
async function assertWaits(launcher: LauncherProcess, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const s = await launcher.client.status();
    assert.equal(s.phase, 'Starting');
    assert.equal(s.qemu.pid, undefined, 'no QEMU starts while the lease is held');
    if (s.lease?.state === 'WaitingForExpiry') {
      assert.equal(s.reason, 'WaitingForLeaseExpiry');
      assert.equal(s.lease.holder, 'pod-first');
      assert.ok((s.lease.holderSilentMs ?? 0) < 2 * R_MS, `holder silent ${String(s.lease.holderSilentMs)} ms while renewing`);
    }
    await sleep(250);
  }
}

void test('a frozen holder is taken over after L; resumed, it kills its QEMU and never writes the new disk', { timeout: 600_000 }, async (t) => {
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const first = await startLauncher({ vm, name: 'ha-first', configure: withLease(vm, 'pod-first'), detached: true });
  t.after(() => first.dispose());
  const running = await waitForStatus(first, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'first Running');
  assert.equal(running.lease?.state, 'Held');
  assert.equal(running.lease?.takeover, false, 'a free lease is no takeover');
  const firstQemu = running.qemu.pid;
  assert.ok(firstQemu !== undefined);
  const [firstRecord] = await waitForCounter(first, 3, BOOT_TIMEOUT_MS);
  const firstBoot = firstRecord.bootId;

  const second = await startLauncher({ vm, name: 'ha-second', configure: withLease(vm, 'pod-second'), detached: true });
  t.after(() => second.dispose());
  // While the first renews, the second waits, and its wait keeps restarting.
  const counterBefore = (await leaseRecord(vm))?.counter ?? 0;
  await assertWaits(second, 4 * R_MS);
  const renewed = await leaseRecord(vm);
  assert.equal(renewed?.holder, 'pod-first');
  assert.ok((renewed?.counter ?? 0) >= counterBefore + 3, `the first renewed ${String(renewed?.counter)} - ${counterBefore} times in 4 s`);

  // Freeze the first launcher and its QEMU together.
  const inodeBefore = await inode(vm.disk);
  process.kill(-first.process.pid!, 'SIGSTOP');
  const frozenAt = performance.now();
  t.after(() => {
    try {
      process.kill(-first.process.pid!, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  const recordsAtFreeze = await readDiskRecords(vm.disk);
  const lastFirstN = Math.max(...recordsAtFreeze.filter((r) => r.bootId === firstBoot).map((r) => r.n));

  const held = await waitForStatus(second, (s) => s.lease?.state === 'Held', 60_000, 'second holds the lease');
  const takeoverMs = performance.now() - frozenAt;
  assert.equal(held.lease?.takeover, true);
  assert.ok(takeoverMs >= L_MS - R_MS, `took over ${Math.round(takeoverMs)} ms after the freeze: before L`);
  const taken = await leaseRecord(vm);
  assert.equal(taken?.holder, 'pod-second');
  assert.equal(taken?.generation, (renewed?.generation ?? 0) + 1);
  const secondRunning = await waitForStatus(second, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'second Running');
  assert.notEqual(await inode(vm.disk), inodeBefore, 'the takeover moved the disk to a new inode');
  const secondRecords = await waitForCounter(second, 3, BOOT_TIMEOUT_MS);
  const secondBoot = secondRecords[0].bootId;
  assert.notEqual(secondBoot, firstBoot);
  const runningMs = performance.now() - frozenAt;

  // Resume the first: it must kill its QEMU at once (its last renewal is long past F).
  process.kill(-first.process.pid!, 'SIGCONT');
  const resumedAt = performance.now();
  const killedAt = await goneAt(firstQemu, 5000);
  const killMs = killedAt - resumedAt;
  assert.ok(killMs < 1000, `the resumed holder's QEMU died ${Math.round(killMs)} ms after SIGCONT`);
  const exit = await first.exited;
  assert.equal(exit.code, 1, 'the fenced launcher exits as a failed VM');
  const fence = first.logs().find((l) => l.msg === 'self-fencing: killing QEMU');
  assert.ok(fence !== undefined, 'the first launcher logged its self-fence');
  assert.ok(fence.reason === 'LeaseExpired' || fence.reason === 'LeaseLost', String(fence.reason));

  // The second keeps running; the disk it uses never gets a record of the first's boot beyond the freeze.
  await waitForCounter(second, secondRecords.length + 10, 60_000);
  const onDisk = await readDiskRecords(vm.disk);
  const lateFirst = onDisk.filter((r) => r.bootId === firstBoot && r.n > lastFirstN);
  assert.deepEqual(lateFirst, [], 'records of the frozen guest written after the freeze reached the new disk');
  assert.ok(onDisk.some((r) => r.bootId === secondBoot));
  const now = await second.client.status();
  assert.equal(now.phase, 'Running');
  assert.equal(now.lease?.state, 'Held');
  assert.equal((await leaseRecord(vm))?.holder, 'pod-second', 'the resumed launcher never wrote the lease');
  t.diagnostic(
    `TCG: takeover ${Math.round(takeoverMs)} ms after the freeze (L=${L_MS} ms), second guest Running ${Math.round(runningMs)} ms after it (QEMU pid ${String(secondRunning.qemu.pid)}); resumed holder's QEMU killed ${Math.round(killMs)} ms after SIGCONT`,
  );
});

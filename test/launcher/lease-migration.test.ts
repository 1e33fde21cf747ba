// Live migration of a highly available VM between two real launchers (real QEMU, TCG,
// the test guest) on one lease file: post-copy is refused; pre-copy completes, the
// source hands the lease to the target, and the target's guest resumes only after the
// target holds it (its QEMU runs with -S). The source does not release the lease it
// handed over; the target renews it and releases it after a clean stop. A target never
// handed the lease kills its paused QEMU after L: the guest never runs there.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LauncherHttpError } from '@keyvirt/launcher/api';
import {
  assertCounterContinues,
  createSharedVm,
  launcherHost,
  migrationOutcome,
  mintMigrationTls,
  removeSharedVm,
  startLauncher,
  startMigration,
  waitForCounter,
  waitForStatus,
  type LauncherProcess,
} from '../support/launcher-process.ts';
import { ensureLeaseDirectory, writeLease } from '../../launcher/src/lease/lease-file.ts';
import { F_MS, goneAt, L_MS, leaseFile, leaseRecord, R_MS, withLease } from './lease-support.ts';

const BOOT_TIMEOUT_MS = 180_000;

async function assertPostCopyRefused(source: LauncherProcess, target: LauncherProcess): Promise<void> {
  const tls = await mintMigrationTls(launcherHost(target));
  const refused = await source.migration
    .start({ target: { host: launcherHost(target), port: 1, launcherUrl: target.baseUrl }, policy: { postCopy: true }, tls: tls.source })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  assert.ok(refused instanceof LauncherHttpError, String(refused));
  assert.equal(refused.status, 409);
  assert.match(refused.body?.error.message ?? '', /post-copy is refused for a highly available VM/);
  assert.equal((await source.client.status()).phase, 'Running');
}

void test('an HA VM migrates pre-copy only; the target runs the guest only once it holds the lease', { timeout: 600_000 }, async (t) => {
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const source = await startLauncher({ vm, name: 'ha-mig-src', configure: withLease(vm, 'pod-src') });
  t.after(() => source.dispose());
  await waitForStatus(source, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'source Running');
  const [first] = await waitForCounter(source, 3, BOOT_TIMEOUT_MS);
  const target = await startLauncher({ vm, name: 'ha-mig-dst', mode: 'migration-target', configure: withLease(vm, 'pod-dst') });
  t.after(() => target.dispose());
  const waiting = await waitForStatus(target, (s) => s.phase === 'WaitingForMigration', 60_000, 'target WaitingForMigration');
  assert.equal(waiting.lease?.holderId, 'pod-dst');
  assert.equal(waiting.lease?.holder, 'pod-src', 'the target sees the source holding the lease');
  const before = await leaseRecord(vm);
  assert.equal(before?.holder, 'pod-src');

  // Post-copy would run the guest on the target before the hand-over: refused.
  await assertPostCopyRefused(source, target);

  await startMigration(source, target, {});
  const { result } = await migrationOutcome(source, 120_000);
  assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
  const running = await waitForStatus(target, (s) => s.phase === 'Running', 30_000, 'target Running');
  assert.deepEqual([running.lease?.state, running.lease?.holder], ['Held', 'pod-dst']);
  const after = await leaseRecord(vm);
  assert.deepEqual([after?.holder, after?.successor, after?.generation], ['pod-dst', 'pod-dst', (before?.generation ?? 0) + 1]);

  // The target's guest resumed only after the target held the lease.
  const incoming = await target.migration.incoming();
  assert.ok(incoming.resumedAtMicros !== null);
  const handedAt = target.logs().find((l) => l.msg === 'lease handed over by the migration source');
  assert.ok(typeof handedAt?.time === 'number', 'the target logged the hand-over');
  assert.ok(handedAt.time <= incoming.resumedAtMicros / 1000, `RESUME at ${incoming.resumedAtMicros / 1000} before the hand-over at ${handedAt.time}`);
  const sourceHanded = source.logs().find((l) => l.msg === 'lease handed over to the migration target');
  assert.ok(typeof sourceHanded?.time === 'number');
  const guestPauseMs = incoming.resumedAtMicros / 1000 - sourceHanded.time;

  // The source quits as Migrated without releasing; the guest runs on (same boot).
  assert.equal((await source.exited).code, 0);
  const renewedFrom = (await leaseRecord(vm))?.counter ?? 0;
  const records = await waitForCounter(target, 5, 60_000);
  assertCounterContinues(records, first.bootId, 'target');
  await sleep(2500);
  const renewed = await leaseRecord(vm);
  assert.equal(renewed?.holder, 'pod-dst');
  assert.ok((renewed?.counter ?? 0) >= renewedFrom + 1, 'the target renews');

  // A clean stop releases the lease.
  await target.client.action('stop');
  assert.equal((await target.exited).code, 0);
  const released = await leaseRecord(vm);
  assert.deepEqual([released?.holder, released?.state], ['pod-dst', 'released']);
  t.diagnostic(`TCG: the target resumed the guest ${Math.round(guestPauseMs)} ms after the source wrote the hand-over`);
});

// The source never hands the lease over (here: a source that holds none, as one that
// died between `completed` and the hand-over would leave it): the target's guest stays
// paused, and after L the target kills its QEMU. The guest never ran there.
void test('an HA target that is never handed the lease never runs the guest', { timeout: 600_000 }, async (t) => {
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  await ensureLeaseDirectory(leaseFile(vm));
  await writeLease(leaseFile(vm), {
    version: 1,
    holder: 'pod-gone',
    node: 'dead-node',
    generation: 4,
    counter: 9,
    state: 'held',
    renewIntervalMs: R_MS,
    fenceTimeoutMs: F_MS,
    acquireTimeoutMs: L_MS,
  });
  const source = await startLauncher({ vm, name: 'ha-mig-nolease-src' });
  t.after(() => source.dispose());
  await waitForStatus(source, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'source Running');
  await waitForCounter(source, 3, BOOT_TIMEOUT_MS);
  const target = await startLauncher({ vm, name: 'ha-mig-nolease-dst', mode: 'migration-target', configure: withLease(vm, 'pod-dst') });
  t.after(() => target.dispose());
  await startMigration(source, target, {});
  const { result } = await migrationOutcome(source, 120_000);
  assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
  const waiting = await waitForStatus(target, (s) => s.reason === 'WaitingForLease', 10_000, 'target WaitingForLease');
  assert.equal(waiting.phase, 'WaitingForMigration');
  const targetQemu = waiting.qemu.pid;
  assert.ok(targetQemu !== undefined);
  await goneAt(targetQemu, L_MS + 5000);
  const goneAtWall = Date.now();
  const waitingSince = target.logs().find((l) => l.msg === 'phase changed' && l.reason === 'WaitingForLease')?.time;
  assert.ok(typeof waitingSince === 'number');
  const waitedMs = goneAtWall - waitingSince;
  assert.ok(waitedMs >= L_MS - 1000, `the target gave up after ${Math.round(waitedMs)} ms`);
  assert.equal((await target.exited).code, 1);
  const ended = target.logs().find((l) => l.msg === 'vm ended');
  assert.deepEqual([ended?.phase, ended?.reason], ['Failed', 'LeaseNotHandedOver']);
  assert.equal(target.logs().filter((l) => l.msg === 'guest resumed on the target').length, 0, 'the target guest never resumed');
  assert.deepEqual(await target.counters(), [], 'the target guest printed nothing');
  assert.equal((await leaseRecord(vm))?.holder, 'pod-gone', 'the target never wrote the lease');
  t.diagnostic(`TCG: the target waited ${Math.round(waitedMs)} ms for a hand-over (L=${L_MS} ms), then killed its paused QEMU`);
});

// A guest that keeps dirtying its memory faster than the migration stream can carry
// it (the test guest's `dirty` workload, CPU-bound, against a 32 MiB/s bandwidth cap):
// with neither auto-converge nor post-copy and a tight completion timeout the
// migration fails cleanly and the VM keeps running on its source; with auto-converge
// it converges; with post-copy it converges by switching over. The counter never
// resets along the chain source → target → target. A guest kernel that crashed on
// any console (a migration that lost guest writes, ADR 0053) fails the suite with the
// kernel's last words.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationEvent, MigrationPolicyInput, MigrationResult } from '../../launcher/src/api/index.ts';
import { createPeerHost, type PeerHost } from '../support/netns.ts';
import { assertCounterContinues, createSharedVm, migrationOutcome, removeSharedVm, startLauncher, startMigration, waitForCounter, waitForStatus, type LauncherProcess, type SharedVm } from '../support/launcher-process.ts';

const BOOT_TIMEOUT_MS = 180_000;
const BANDWIDTH = 32 * 1024 * 1024;
/**
 * Dirties 128 MiB/s of a 64 MiB working set, four times what the 32 MiB/s cap carries
 * (started at boot from the cloud-init user-data; its output goes straight to the
 * console). The rate is paced in 10 ms slices and a slice the throttled vCPU misses is
 * dropped, so auto-converge's throttle lowers the dirty rate in proportion. A guest
 * dirtying "as fast as the vCPU allows" does not: under TCG one 10 ms slice a second
 * (99 % throttle) still rewrites most of the working set, and whether such a migration
 * converges within its budget then depends on the host's load, not on auto-converge.
 */
const DIRTYING_USER_DATA = '#!/bin/sh\nexec /bin/dirty 128 64 >/dev/console 2>&1\n';


/** Fails with the guest kernel's last words when a launcher's console shows an oops or a panic. */
async function assertNoKernelCrash(launcher: LauncherProcess, where: string): Promise<void> {
  const lines = (await launcher.serial()).split(/\r?\n/);
  const at = lines.findIndex((l) => /Kernel panic|kernel BUG|BUG: |Oops|general protection fault|list_(add|del) corruption/.test(l));
  assert.equal(at, -1, `${where}: the guest kernel crashed on ${launcher.name}:\n${lines.slice(Math.max(0, at - 2), at + 40).join('\n')}`);
}

async function migrate(
  source: LauncherProcess,
  target: LauncherProcess,
  policy: MigrationPolicyInput,
): Promise<{ result: MigrationResult; events: MigrationEvent[] }> {
  await startMigration(source, target, policy);
  return migrationOutcome(source, 400_000);
}

async function startTarget(vm: SharedVm, peer: PeerHost, inPeer: boolean, name: string): Promise<LauncherProcess> {
  return startLauncher({
    vm,
    mode: 'migration-target',
    name,
    ...(inPeer ? { address: peer.address, netnsExec: peer.exec } : { address: peer.rootAddress }),
  });
}

void test('a memory-dirtying guest: timeout without help, convergence by auto-converge and by post-copy', { timeout: 1_500_000 }, async (t) => {
  const vm = await createSharedVm({ userData: DIRTYING_USER_DATA });
  t.after(() => removeSharedVm(vm));
  const peer = await createPeerHost();
  t.after(() => peer.destroy());

  const first = await startLauncher({ vm, mode: 'run', address: peer.rootAddress, name: 'dirty-source' });
  t.after(() => first.dispose());
  await waitForStatus(first, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'Running');
  const before = await waitForCounter(first, 3, BOOT_TIMEOUT_MS);
  const bootId = before[0]?.bootId ?? '';
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  while (!(await readFile(first.serialLog, 'utf8')).includes('dirty: pid=')) {
    assert.ok(Date.now() < deadline, 'the dirtying workload did not start');
    await sleep(500);
  }

  await t.test('without auto-converge or post-copy a tight completion timeout fails cleanly', async (st) => {
    const target = await startTarget(vm, peer, true, 'timeout-target');
    st.after(() => target.dispose());
    const countBefore = (await first.counters()).length;
    // 40 s per GiB of a 256 MiB guest: 10 s.
    const { result } = await migrate(first, target, { bandwidthBytesPerSecond: BANDWIDTH, completionTimeoutPerGiBSeconds: 40 });
    assert.equal(result.phase, 'Failed', JSON.stringify(result));
    assert.equal(result.reason, 'CompletionTimeout');
    assert.equal(result.sourceRunning, true);
    const status = await waitForStatus(first, (s) => s.phase === 'Running', 30_000, 'Running after the failed migration');
    assert.equal(status.reason, 'MigrationFailed');
    assert.equal((await target.exited).code, 0, 'the target launcher tears itself down');
    assertCounterContinues(await waitForCounter(first, countBefore + 10, 60_000), bootId, 'source after the timeout');
  });

  let current = first;
  await t.test('auto-converge throttles the guest until the migration converges', async () => {
    const target = await startTarget(vm, peer, true, 'autoconverge-target');
    t.after(() => target.dispose());
    const { result, events } = await migrate(first, target, {
      bandwidthBytesPerSecond: BANDWIDTH,
      autoConverge: true,
      completionTimeoutPerGiBSeconds: 1200,
    });
    assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
    const throttled = events.some((e) => e.type === 'progress' && e.progress.cpuThrottlePercent > 0);
    assert.ok(throttled, 'the guest was throttled');
    assert.ok(events.some((e) => e.type === 'progress' && e.progress.downtimeLimitMs > 100), 'the downtime schedule was stepped');
    t.diagnostic(`auto-converge: ${result.iterations} iterations, total ${result.totalTimeMs} ms, downtime ${result.downtimeMs} ms`);
    assert.equal((await first.exited).code, 0);
    await waitForStatus(target, (s) => s.phase === 'Running', 60_000, 'Running');
    const records = await waitForCounter(target, 5, 60_000);
    await assertNoKernelCrash(first, 'auto-converge');
    await assertNoKernelCrash(target, 'auto-converge');
    assertCounterContinues([...(await first.counters()), ...records], bootId, 'source then target');
    current = target;
  });

  await t.test('post-copy switches over when the downtime schedule is exhausted', async () => {
    assert.notEqual(current, first, 'needs the VM on the auto-converge target');
    const target = await startTarget(vm, peer, false, 'postcopy-target');
    t.after(() => target.dispose());
    const { result } = await migrate(current, target, {
      bandwidthBytesPerSecond: BANDWIDTH,
      postCopy: true,
      downtimeScheduleMs: [100, 150, 200],
      stalledIterationsPerStep: 1,
      completionTimeoutPerGiBSeconds: 1200,
    });
    assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
    assert.equal(result.postCopy, true);
    t.diagnostic(`post-copy: ${result.iterations} iterations, total ${result.totalTimeMs} ms, pause ${result.guestPauseMs} ms`);
    assert.equal((await current.exited).code, 0);
    await waitForStatus(target, (s) => s.phase === 'Running', 60_000, 'Running');
    const records = await waitForCounter(target, 5, 60_000);
    await assertNoKernelCrash(current, 'post-copy');
    await assertNoKernelCrash(target, 'post-copy');
    assertCounterContinues(
      [...(await first.counters()), ...(await current.counters()), ...records],
      bootId,
      'the whole chain',
    );
  });
});

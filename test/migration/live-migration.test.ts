// Live migration of the running test guest between two real launchers, the target in
// another network namespace ("another host"): the counter continues with the same boot
// id, the agent answers on the target, the disk holds what the guest wrote after the
// switch, and the source launcher exits 0 (Migrated). Then, from the new source, a
// cancelled migration and a migration whose target is killed midway: the VM keeps
// running where it was and its counter never resets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorBodySchema, LauncherHttpError, MigrationClient } from '../../launcher/src/api/index.ts';
import { readDiskRecords } from '../support/guest.ts';
import {
  assertCounterContinues,
  migrationOutcome,
  mintMigrationTls,
  startLauncher,
  startMigration,
  waitForCounter,
  waitForStatus,
} from '../support/launcher-process.ts';
import { peerTarget, runningSource } from './migration-pair.ts';

const BOOT_TIMEOUT_MS = 120_000;


void test('live migration between launchers across network namespaces, and rollbacks', { timeout: 900_000 }, async (t) => {
  const run = await runningSource(t, { name: 'source', bootTimeoutMs: BOOT_TIMEOUT_MS, counters: 5 });
  const { vm, peer, source: first, bootId } = run;
  const second = await peerTarget(t, run, 'target');

  await t.test('bad or misplaced migration requests are refused and the VM keeps running', async () => {
    const bad = await fetch(`${first.baseUrl}/v1/migrations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${vm.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: { host: 'not a host', port: 70_000 }, policy: { downtimeScheduleMs: [] } }),
    });
    assert.equal(bad.status, 400);
    const body = ErrorBodySchema.parse(await bad.json());
    const paths = (body.error.issues ?? []).map((i) => i.path).sort();
    assert.deepEqual(paths, ['policy.downtimeScheduleMs', 'target.host', 'target.port', 'tls']);
    const tls = await mintMigrationTls(peer.address);
    await assert.rejects(first.migration.current(), (err) => err instanceof LauncherHttpError && err.status === 404);
    await assert.rejects(first.migration.prepareIncoming({ tls: tls.target }), (err) => err instanceof LauncherHttpError && err.status === 409);
    await assert.rejects(
      new MigrationClient({ baseUrl: first.baseUrl, token: 'wrong-token-wrong-token' }).start({ target: { host: '127.0.0.1', port: 1 }, tls: tls.source }),
      (err) => err instanceof LauncherHttpError && err.status === 401,
    );
    const status = await first.client.status();
    assert.equal(status.phase, 'Running');
  });

  await t.test('the guest moves to the target launcher without noticing', async () => {
    const incoming = await startMigration(first, second, {}, 'idle-1');
    assert.equal(incoming.host, peer.address);
    assert.equal(incoming.phase, 'Listening');
    assert.equal((await first.migration.current()).migrationId, 'idle-1');
    const { result, events } = await migrationOutcome(first, 300_000);
    assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
    assert.ok(events.some((e) => e.type === 'progress' && e.progress.transferredBytes > 0), 'progress events carry transferred bytes');
    assert.ok((result.totalTimeMs ?? 0) > 0, 'total time reported');
    assert.ok(result.downtimeMs !== null && result.downtimeMs >= 0, 'downtime reported');
    assert.ok(result.setupTimeMs !== null, 'setup time reported');
    assert.ok(result.guestPauseMs !== null && result.guestPauseMs > 0 && result.guestPauseMs < 10_000, `guest pause ${result.guestPauseMs}`);
    assert.equal(result.sourceRunning, false);
    t.diagnostic(`idle migration: total ${result.totalTimeMs} ms, downtime ${result.downtimeMs} ms, pause ${result.guestPauseMs} ms`);

    // The source launcher hands over and exits cleanly.
    assert.equal((await first.exited).code, 0);
    assert.match(first.output(), /"reason":"Migrated"/);

    const switched = Date.now();
    const target = await waitForStatus(second, (s) => s.phase === 'Running', 60_000, 'Running');
    assert.equal((await second.migration.incoming()).phase, 'Succeeded');
    assert.equal(target.qemu.runState, 'running');
    const sourceRecords = await first.counters();
    const targetRecords = await waitForCounter(second, 5, 60_000);
    assertCounterContinues(sourceRecords, bootId, 'source');
    assertCounterContinues(targetRecords, bootId, 'target');
    const lastOnSource = sourceRecords.at(-1)?.n ?? 0;
    const firstOnTarget = targetRecords[0]?.n ?? 0;
    assert.ok(firstOnTarget > lastOnSource && firstOnTarget <= lastOnSource + 2, `counter ${lastOnSource} on the source, ${firstOnTarget} next on the target`);

    // The agent answers on the target.
    const withAgent = await waitForStatus(
      second,
      (s) => s.guestAgent.connected && Date.parse(s.guestAgent.lastSeen ?? '') > switched,
      60_000,
      'the guest agent answering on the target',
    );
    assert.equal(withAgent.guest.os?.id, 'debian');

    // The disk holds what the guest wrote after the switch.
    const latest = (await second.counters()).at(-1)?.n ?? 0;
    const onDisk = (await readDiskRecords(vm.disk, vm.diskFormat)).filter((r) => r.bootId === bootId);
    assert.ok(onDisk.some((r) => r.n === latest), `record n=${latest} (written on the target) is on the disk`);
  });

  // The VM now runs in the peer namespace; it migrates back towards the root namespace.
  const source = second;

  await t.test('cancelling midway leaves the VM running on its source', async (st) => {
    const target = await startLauncher({ vm, mode: 'migration-target', address: peer.rootAddress, name: 'cancel-target' });
    st.after(() => target.dispose());
    const countBefore = (await source.counters()).length;
    await startMigration(source, target, { bandwidthBytesPerSecond: 8 * 1024 * 1024 });
    await waitForStatus(source, (s) => s.phase === 'Migrating', 10_000, 'Migrating');
    await sleep(2000);
    const cancelled = await source.migration.cancel();
    assert.equal(cancelled.result, null);
    const { result } = await migrationOutcome(source, 300_000);
    assert.equal(result.phase, 'Cancelled');
    assert.equal(result.reason, 'Cancelled');
    assert.equal(result.sourceRunning, true);
    assert.ok(result.transferredBytes > 0);
    const status = await waitForStatus(source, (s) => s.phase === 'Running', 30_000, 'Running after the cancel');
    assert.equal(status.reason, 'MigrationCancelled');
    assert.equal((await target.exited).code, 0, 'the target launcher tears itself down');
    const records = await waitForCounter(source, countBefore + 10, 60_000);
    assertCounterContinues(records, bootId, 'source after the cancel');
  });

  await t.test('a target killed midway leaves the VM running on its source', async (st) => {
    const target = await startLauncher({ vm, mode: 'migration-target', address: peer.rootAddress, name: 'doomed-target' });
    st.after(() => target.dispose());
    const countBefore = (await source.counters()).length;
    await startMigration(source, target, { bandwidthBytesPerSecond: 8 * 1024 * 1024 });
    await sleep(2000);
    await target.dispose();
    const { result } = await migrationOutcome(source, 300_000);
    assert.equal(result.phase, 'Failed');
    assert.equal(result.reason, 'QemuFailed');
    assert.equal(result.sourceRunning, true);
    const status = await waitForStatus(source, (s) => s.phase === 'Running', 30_000, 'Running after the target died');
    assert.equal(status.reason, 'MigrationFailed');
    const records = await waitForCounter(source, countBefore + 10, 60_000);
    assertCounterContinues(records, bootId, 'source after the target died');
  });
});

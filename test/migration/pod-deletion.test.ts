// Deleting the source launcher's pod (SIGTERM) while it migrates the running test guest
// to a target in another network namespace: the migration is cancelled first, the
// guest resumes on its source and then powers off gracefully, as on any pod deletion —
// it is neither killed mid-migration nor left half-moved. The target launcher tears
// itself down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPeerHost } from '../support/netns.ts';
import {
  assertCounterContinues,
  createSharedVm,
  migrationOutcome,
  removeSharedVm,
  startLauncher,
  startMigration,
  waitForCounter,
  waitForStatus,
} from '../support/launcher-process.ts';

const BOOT_TIMEOUT_MS = 240_000;

void test('SIGTERM to a migrating source launcher cancels the migration, then shuts the guest down gracefully', { timeout: 900_000 }, async (t) => {
  const vm = await createSharedVm();
  t.after(() => removeSharedVm(vm));
  const peer = await createPeerHost();
  t.after(() => peer.destroy());

  const source = await startLauncher({ vm, mode: 'run', address: peer.rootAddress, name: 'deleted-source' });
  t.after(() => source.dispose());
  t.diagnostic(`accelerator=${(await source.client.info()).accelerator}`);
  await waitForStatus(source, (s) => s.phase === 'Running' && s.guestAgent.connected, BOOT_TIMEOUT_MS, 'Running with the agent connected');
  const bootId = (await waitForCounter(source, 3, BOOT_TIMEOUT_MS))[0]?.bootId ?? '';

  const target = await startLauncher({ vm, mode: 'migration-target', address: peer.address, netnsExec: peer.exec, name: 'abandoned-target' });
  t.after(() => target.dispose());

  // 8 MiB/s keeps a 256 MiB guest migrating for half a minute: long enough to delete the pod midway.
  await startMigration(source, target, { bandwidthBytesPerSecond: 8 * 1024 * 1024 });
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

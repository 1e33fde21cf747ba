// The test guest survives a live migration between two bare QEMU processes on the same
// disk: the counter goes on at the target with the same boot id and no break, the
// records reach the shared disk, the agent answers at the target, and the dirtying
// workload started before the migration keeps running after it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import {
  counterContinuity,
  createBlankDisk,
  dirtyMemoryCommand,
  parseCounterLines,
  parseDirtyStat,
  readDiskRecords,
  testGuest,
  type CounterRecord,
} from '../support/guest.ts';
import { AgentSession, QmpSession, runInGuest, startInGuest } from './monitor-sockets.ts';
import { bootGuest, type BootOptions, type BootedGuest } from './qemu-boot.ts';

const migrationSchema = z
  .object({
    status: z.string(),
    'total-time': z.number().optional(),
    downtime: z.number().optional(),
    ram: z.object({ transferred: z.number() }).loose().optional(),
  })
  .loose();

/** MiB dirtied so far, once the workload has set up its working set and reported. */
async function dirtiedMiB(agent: AgentSession, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let result = await runInGuest(agent, { path: '/bin/cat', arg: ['/run/dirty.stat'] });
  while (result.exitCode !== 0 && Date.now() < deadline) {
    await sleep(250);
    result = await runInGuest(agent, { path: '/bin/cat', arg: ['/run/dirty.stat'] });
  }
  assert.equal(result.exitCode, 0, 'the dirtying workload is running');
  const stat = parseDirtyStat(result.stdout);
  assert.ok(stat !== undefined, `unreadable /run/dirty.stat: ${result.stdout}`);
  return stat.dirtiedMiB;
}

void describe('test guest across a live migration (bare QEMU, shared qcow2 disk)', { timeout: 15 * 60_000 }, () => {
  let dir = '';
  let disk = '';
  let source: BootedGuest | undefined;
  let target: BootedGuest | undefined;
  const sessions: { close(): void }[] = [];

  before(async () => {
    await testGuest();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-migration-'));
    disk = await createBlankDisk(dir, { format: 'qcow2', sizeMiB: 64 });
  });

  after(async () => {
    for (const s of sessions) s.close();
    await source?.dispose();
    await target?.dispose();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('keeps counting with the same boot id on the target, dirtying workload included', async () => {
    const machine: BootOptions = { machine: 'q35', disks: [{ path: disk, format: 'qcow2', bus: 'virtio-blk' }] };
    source = await bootGuest(machine);
    const sourceAgent = await AgentSession.connect(source.agentSocket);
    sessions.push(sourceAgent);
    await sourceAgent.sync(240_000);
    await startInGuest(sourceAgent, dirtyMemoryCommand(16));
    await source.waitForSerial(/KV boot=\S+ n=10 /, 120_000);
    const dirtiedBefore = await dirtiedMiB(sourceAgent);

    target = await bootGuest({ ...machine, incoming: true });
    const sourceQmp = await QmpSession.connect(source.qmpSocket);
    const targetQmp = await QmpSession.connect(target.qmpSocket);
    sessions.push(sourceQmp, targetQmp);
    const uri = `unix:${path.join(dir, 'migration.sock')}`;
    await targetQmp.execute('migrate-incoming', { uri });
    await sourceQmp.execute('migrate-set-parameters', { 'max-bandwidth': 1024 * 1024 * 1024, 'downtime-limit': 300 });
    await sourceQmp.execute('migrate', { uri });
    const deadline = Date.now() + 300_000;
    let info = migrationSchema.parse(await sourceQmp.execute('query-migrate'));
    while (info.status !== 'completed' && Date.now() < deadline) {
      assert.ok(!['failed', 'cancelled'].includes(info.status), `migration ${info.status}`);
      await sleep(100);
      info = migrationSchema.parse(await sourceQmp.execute('query-migrate'));
    }
    assert.equal(info.status, 'completed');
    await sleep(500); // QEMU 7.2 fills in the final times a moment after "completed"
    info = migrationSchema.parse(await sourceQmp.execute('query-migrate'));
    console.log(
      `GUEST migration accel=${source.accelerator} total_ms=${info['total-time']} downtime_ms=${info.downtime} transferred_mib=${((info.ram?.transferred ?? 0) / 2 ** 20).toFixed(1)} dirty_mib_s=16`,
    );
    await targetQmp.waitForEvent('RESUME', 30_000);

    const sourceRecords = parseCounterLines(await source.readSerial());
    const lastOnSource = sourceRecords.at(-1)!;
    const cutoff = lastOnSource.n + 10;
    await target.waitForSerial(new RegExp(`KV boot=${lastOnSource.bootId} n=${cutoff} `), 120_000);
    const targetRecords = parseCounterLines(await target.readSerial());
    const combined: CounterRecord[] = [...sourceRecords, ...targetRecords];
    const continuity = counterContinuity(combined);
    assert.deepEqual(continuity.bootIds, [lastOnSource.bootId], 'same boot, no reboot');
    assert.deepEqual(continuity.breaks, [], 'no record lost or repeated across the switch');
    console.log(`GUEST migration guest_visible_max_gap_ms=${continuity.maxGapMs}`);

    const targetAgent = await AgentSession.connect(target.agentSocket);
    sessions.push(targetAgent);
    await targetAgent.sync(60_000);
    assert.deepEqual(await targetAgent.execute('guest-ping'), {});
    const dirtiedAfter = await dirtiedMiB(targetAgent);
    assert.ok(dirtiedAfter > dirtiedBefore, `dirtying went on: ${dirtiedBefore} → ${dirtiedAfter} MiB`);

    const stored = (await readDiskRecords(disk, 'qcow2')).filter((r) => r.bootId === lastOnSource.bootId);
    assert.ok(stored.at(-1)!.n >= cutoff, 'records written on the target are on the shared disk');
  });
});

// The test guest on a q35 machine with everything attached (virtio-blk qcow2 disk,
// NoCloud seed CD-ROM, agent channel, user-mode network): it boots, prints and stores
// its counter, reads the seed, answers the agent, dirties memory on request, and
// powers off on an ACPI power-button press.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import {
  createBlankDisk,
  createSeedIso,
  dirtyMemoryCommand,
  killGuestProcessCommand,
  parseCounterLines,
  parseDirtyStat,
  parseSeedReport,
  parseSeedTestValues,
  readDiskRecords,
  testGuest,
  type DirtyStat,
} from '../support/guest.ts';
import { AgentSession, QmpSession, runInGuest, startInGuest } from './monitor-sockets.ts';
import { bootGuest, type BootedGuest } from './qemu-boot.ts';

const osInfoSchema = z.object({ id: z.string(), 'version-id': z.string(), 'kernel-release': z.string() }).loose();
const interfacesSchema = z.array(
  z.object({
    name: z.string(),
    'ip-addresses': z.array(z.object({ 'ip-address': z.string(), 'ip-address-type': z.string() })).optional(),
  }),
);
const dirtyRateSchema = z.object({ status: z.string(), 'dirty-rate': z.number().optional() }).loose();

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function measureDirtyRate(qmp: QmpSession, seconds: number): Promise<number> {
  await qmp.execute('calc-dirty-rate', { 'calc-time': seconds });
  const deadline = Date.now() + (seconds + 60) * 1000;
  for (;;) {
    const rate = dirtyRateSchema.parse(await qmp.execute('query-dirty-rate'));
    if (rate.status === 'measured') return rate['dirty-rate'] ?? 0;
    if (Date.now() > deadline) throw new Error(`dirty rate not measured: ${rate.status}`);
    await sleep(250);
  }
}

async function readDirtyStat(agent: AgentSession): Promise<DirtyStat | undefined> {
  const result = await runInGuest(agent, { path: '/bin/cat', arg: ['/run/dirty.stat'] });
  if (result.exitCode !== 0) return undefined;
  const stat = parseDirtyStat(result.stdout);
  assert.ok(stat !== undefined, `unreadable /run/dirty.stat: ${result.stdout}`);
  return stat;
}

void describe('test guest on q35 with disk, seed, agent and network', { timeout: 15 * 60_000 }, () => {
  let dir = '';
  let disk = '';
  let vm: BootedGuest | undefined;
  let agent: AgentSession | undefined;
  let qmp: QmpSession | undefined;
  const testValue = `tv-${randomUUID().slice(0, 8)}`;

  before(async () => {
    await testGuest();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-boot-'));
    disk = await createBlankDisk(dir, { format: 'qcow2', sizeMiB: 64 });
    const seed = await createSeedIso(dir, { instanceId: 'iid-kv-guest-boot', hostname: 'kv-guest-a', testValue });
    vm = await bootGuest({ machine: 'q35', disks: [{ path: disk, format: 'qcow2', bus: 'virtio-blk' }], seedIso: seed });
    qmp = await QmpSession.connect(vm.qmpSocket);
  });

  after(async () => {
    agent?.close();
    qmp?.close();
    await vm?.dispose();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('answers the guest agent: sync, ping, Debian 12 osinfo', async () => {
    const booted = vm!;
    agent = await AgentSession.connect(booted.agentSocket);
    await agent.sync(240_000);
    const bootToAgentMs = Date.now() - booted.startedAt;
    const firstCounter = await booted.waitForSerial(/KV boot=\S+ n=1 t=(\d+)/, 60_000);
    console.log(
      `GUEST boot-to-agent accel=${booted.accelerator} qemu_start_to_agent_ms=${bootToAgentMs} guest_uptime_at_first_counter_ms=${firstCounter[1]}`,
    );
    assert.deepEqual(await agent.execute('guest-ping'), {});
    const os = osInfoSchema.parse(await agent.execute('guest-get-osinfo'));
    assert.equal(os.id, 'debian');
    assert.equal(os['version-id'], '12');
    assert.equal(os['kernel-release'], (await testGuest()).kernelRelease);
  });

  void it('answers the other agent calls a launcher makes: users, filesystems, freeze/thaw, time, info', async () => {
    assert.ok(Array.isArray(await agent!.execute('guest-get-users')));
    const filesystems = z.array(z.object({ mountpoint: z.string(), type: z.string() }).loose()).parse(await agent!.execute('guest-get-fsinfo'));
    assert.ok(filesystems.some((f) => f.mountpoint === '/run/seed' && f.type === 'iso9660'), JSON.stringify(filesystems));
    assert.ok(filesystems.some((f) => f.mountpoint === '/data' && f.type === 'ext2'), JSON.stringify(filesystems));
    assert.equal(await agent!.execute('guest-fsfreeze-status'), 'thawed');
    assert.equal(await agent!.execute('guest-fsfreeze-freeze'), 1, 'one filesystem (/data) frozen');
    assert.equal(await agent!.execute('guest-fsfreeze-status'), 'frozen');
    assert.equal(await agent!.execute('guest-fsfreeze-thaw'), 1);
    assert.equal(await agent!.execute('guest-fsfreeze-status'), 'thawed');
    const guestNs = z.number().parse(await agent!.execute('guest-get-time'));
    assert.ok(Math.abs(guestNs / 1e6 - Date.now()) < 120_000, 'guest clock follows the host (RTC)');
    const info = z.object({ version: z.string(), supported_commands: z.array(z.object({ name: z.string(), enabled: z.boolean() }).loose()) }).loose().parse(await agent!.execute('guest-info'));
    assert.equal(info.version, (await testGuest()).guestAgentVersion);
    assert.ok(info.supported_commands.some((c) => c.name === 'guest-exec' && c.enabled));
  });

  void it('keeps its clock at the pace of the host clock (no mis-calibrated clocksource)', async () => {
    const offset = async (): Promise<number> => z.number().parse(await agent!.execute('guest-get-time')) / 1e6 - Date.now();
    const first = await offset();
    await sleep(5000);
    const drift = (await offset()) - first;
    assert.ok(Math.abs(drift) < 1000, `guest clock drifted ${drift} ms in 5 s`);
  });

  void it('prints a boot id and a counter every ~200 ms on the serial console', async () => {
    await vm!.waitForSerial(/KV boot=\S+ n=10 /, 120_000);
    const records = parseCounterLines(await vm!.readSerial());
    assert.ok(records.length >= 10);
    assert.equal(new Set(records.map((r) => r.bootId)).size, 1, 'one boot id');
    records.forEach((r, i) => assert.equal(r.n, i + 1, 'counter starts at 1 and never skips'));
    const intervals = records.slice(1).map((r, i) => r.uptimeMs - records[i].uptimeMs);
    const typical = median(intervals);
    assert.ok(typical >= 100 && typical <= 400, `median interval ${typical} ms`);
  });

  void it('reads the NoCloud seed: instance id, hostname, test value', async () => {
    const serial = await vm!.readSerial();
    assert.deepEqual(parseSeedReport(serial), { instanceId: 'iid-kv-guest-boot', hostname: 'kv-guest-a' });
    assert.deepEqual(parseSeedTestValues(serial), [testValue]);
    assert.deepEqual(await agent!.execute('guest-get-host-name'), { 'host-name': 'kv-guest-a' });
  });

  void it('gets 10.0.2.15 from user-mode networking and reports it through the agent', async () => {
    const deadline = Date.now() + 120_000;
    let addresses: string[] = [];
    while (Date.now() < deadline) {
      const ifaces = interfacesSchema.parse(await agent!.execute('guest-network-get-interfaces'));
      addresses = ifaces.filter((i) => i.name === 'eth0').flatMap((i) => (i['ip-addresses'] ?? []).map((a) => a['ip-address']));
      if (addresses.includes('10.0.2.15')) break;
      await sleep(500);
    }
    assert.ok(addresses.includes('10.0.2.15'), `eth0 addresses: ${addresses.join(', ')}`);
  });

  void it('writes every record it prints to its disk first', async () => {
    const printed = parseCounterLines(await vm!.readSerial());
    const lastPrinted = printed.at(-1)!;
    const stored = (await readDiskRecords(disk, 'qcow2')).filter((r) => r.bootId === lastPrinted.bootId);
    assert.ok(stored.length >= printed.length, `${stored.length} stored, ${printed.length} printed`);
    assert.ok(stored.at(-1)!.n >= lastPrinted.n);
    stored.forEach((r, i) => assert.equal(r.n, i + 1));
  });

  void it('dirties memory at the requested rate when started through guest-exec', async () => {
    const idleRate = await measureDirtyRate(qmp!, 2);
    const pid = await startInGuest(agent!, dirtyMemoryCommand(64));
    let first = await readDirtyStat(agent!);
    for (const deadline = Date.now() + 60_000; first === undefined && Date.now() < deadline; ) {
      await sleep(250); // it sets up its working set first
      first = await readDirtyStat(agent!);
    }
    await sleep(3000);
    const second = await readDirtyStat(agent!);
    assert.ok(first !== undefined && second !== undefined, 'the workload keeps /run/dirty.stat');
    assert.equal(first.pid, pid);
    assert.equal(first.rateMiBs, 64);
    const observed = ((second.dirtiedMiB - first.dirtiedMiB) * 1000) / (second.elapsedMs - first.elapsedMs);
    const busyRate = await measureDirtyRate(qmp!, 2);
    console.log(
      `GUEST dirty accel=${vm!.accelerator} requested_mib_s=64 guest_counted_mib_s=${observed.toFixed(1)} qemu_dirty_rate_mb_s idle=${idleRate} busy=${busyRate}`,
    );
    // missed slices are dropped (that is what lets auto-converge work), so a starved vCPU dirties less
    assert.ok(observed >= 24 && observed <= 64 * 1.25, `guest dirtied ${observed} MiB/s`);
    assert.ok(busyRate > idleRate, `QEMU saw ${busyRate} MB/s busy vs ${idleRate} idle`);
    const killed = await runInGuest(agent!, killGuestProcessCommand(pid));
    assert.equal(killed.exitCode, 0);
    await sleep(500);
    assert.equal(await readDirtyStat(agent!), undefined, 'stopped workload removes its stat file');
  });

  void it('powers off cleanly on system_powerdown (ACPI power button)', async () => {
    const booted = vm!;
    const before = parseCounterLines(await booted.readSerial()).at(-1)!;
    const pressedAt = Date.now();
    await qmp!.execute('system_powerdown');
    const exit = await booted.waitForExit(180_000);
    console.log(`GUEST powerdown accel=${booted.accelerator} powerdown_to_exit_ms=${Date.now() - pressedAt}`);
    assert.deepEqual(exit, { code: 0, signal: null });
    const shutdown = qmp!.events.find((e) => e.event === 'SHUTDOWN');
    assert.equal(shutdown?.data.guest, true, 'the guest itself switched off');
    const serial = await booted.readSerial();
    assert.match(serial, /ACPI power button pressed/);
    assert.match(serial, /keyvirt-guest: shutting down/);
    const last = parseCounterLines(serial).at(-1)!;
    assert.ok(last.n >= before.n);
    const stored = (await readDiskRecords(disk, 'qcow2')).filter((r) => r.bootId === last.bootId);
    assert.ok(stored.at(-1)!.n >= last.n, 'every printed record is on the disk');
  });
});

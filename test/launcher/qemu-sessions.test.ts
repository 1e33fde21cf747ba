// The QMP and guest-agent clients against a real QEMU (built with the launcher's own
// command line) and the test guest: capabilities negotiation, events, typed errors,
// disconnects; the agent's info, OS, interfaces, file systems, guest-exec and shutdown.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { z } from 'zod';
import { GuestAgentClient } from '../../launcher/src/agent/client.ts';
import { AgentCommandError } from '../../launcher/src/agent/errors.ts';
import { chooseAccelerator } from '../../launcher/src/qemu/accelerator.ts';
import { buildQemuArgs } from '../../launcher/src/qemu/command-line.ts';
import type { MachinePlan } from '../../launcher/src/qemu/command-line.ts';
import { probeDiskCacheMode } from '../../launcher/src/qemu/disk-cache.ts';
import { QmpClient } from '../../launcher/src/qmp/client.ts';
import { QmpDisconnectedError, QmpExecuteError } from '../../launcher/src/qmp/errors.ts';
import type { QmpEvent } from '../../launcher/src/qmp/messages.ts';
import { emptyReturnSchema, queryStatusSchema } from '../../launcher/src/qmp/messages.ts';
import { createBlankDisk, testGuest } from '../support/guest.ts';

const logger = pino({ level: 'silent' });

interface Qemu {
  dir: string;
  child: ChildProcess;
  plan: MachinePlan;
  exited: Promise<unknown[]>;
}

async function startQemu(t: { after: (fn: () => Promise<void>) => void }, withGuest: boolean): Promise<Qemu> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-qemu-sessions-'));
  const { accelerator } = await chooseAccelerator(true);
  const guest = withGuest ? await testGuest() : undefined;
  const disk = await createBlankDisk(dir, { format: 'qcow2', sizeMiB: 64, name: 'root.qcow2' });
  const plan: MachinePlan = {
    guestName: 'kv-test_sessions',
    machineType: 'q35',
    accelerator,
    cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
    memory: { sizeMiB: 256 },
    disks: [
      // The guest boots from its disk through the firmware, as every VM does (ADR 0087).
      ...(guest === undefined
        ? []
        : [{ name: 'boot', path: guest.disk, format: 'qcow2' as const, bus: 'virtio' as const, bootOrder: 1, readOnly: true, cache: await probeDiskCacheMode(guest.disk) }]),
      { name: 'root', path: disk, format: 'qcow2', bus: 'virtio', readOnly: false, cache: 'none' },
    ],
    interfaces: [{ name: 'default', model: 'virtio', backend: 'user', macAddress: '52:54:00:4b:56:02', portForwards: [] }],
    hostDevices: [],
    sockets: { qmp: path.join(dir, 'qmp.sock'), serial: path.join(dir, 'serial.sock'), guestAgent: path.join(dir, 'qga.sock') },
    serialLog: path.join(dir, 'serial.log'),
  };
  const child = spawn('qemu-system-x86_64', buildQemuArgs(plan), { stdio: 'ignore' });
  const exited = once(child, 'exit');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, child, plan, exited };
}

async function connectQmp(qemu: Qemu): Promise<QmpClient> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await QmpClient.connect({ path: qemu.plan.sockets.qmp, logger });
    } catch (err) {
      if (Date.now() > deadline || qemu.child.exitCode !== null) throw err;
      await sleep(100);
    }
  }
}

void test('QMP against real QEMU: negotiation, commands, events, typed errors, disconnect', { timeout: 120_000 }, async (t) => {
  const qemu = await startQemu(t, false);
  const qmp = await connectQmp(qemu);
  t.after(() => qmp.close());
  assert.equal(qmp.greeting.QMP.version.qemu.major, 7);
  const events: QmpEvent[] = [];
  qmp.on('event', (e) => events.push(e));

  assert.equal((await qmp.execute('query-status', undefined, queryStatusSchema)).status, 'running');
  await qmp.execute('stop', undefined, emptyReturnSchema);
  assert.equal((await qmp.execute('query-status', undefined, queryStatusSchema)).status, 'paused');
  await qmp.execute('cont', undefined, emptyReturnSchema);
  const deadline = Date.now() + 10_000;
  while (!events.some((e) => e.event === 'RESUME') && Date.now() < deadline) await sleep(50);
  assert.deepEqual(events.map((e) => e.event).filter((e) => e === 'STOP' || e === 'RESUME'), ['STOP', 'RESUME']);

  await assert.rejects(qmp.execute('no-such-command', undefined, z.unknown()), (err: unknown) => {
    assert.ok(err instanceof QmpExecuteError);
    assert.equal(err.errorClass, 'CommandNotFound');
    return true;
  });
  await assert.rejects(qmp.execute('query-status', { bogus: 1 }, z.unknown()), (err: unknown) => err instanceof QmpExecuteError && err.errorClass === 'GenericError');

  // Concurrent commands each get their own answer.
  const [a, b] = await Promise.all([
    qmp.execute('query-name', undefined, z.object({ name: z.string() })),
    qmp.execute('query-uuid', undefined, z.object({ UUID: z.string() })),
  ]);
  assert.equal(a.name, 'kv-test_sessions');
  assert.match(b.UUID, /^[0-9a-f-]{36}$/);

  const disconnected = once(qmp, 'disconnect');
  qemu.child.kill('SIGKILL');
  await disconnected;
  await assert.rejects(qmp.execute('query-status', undefined, queryStatusSchema), QmpDisconnectedError);
});

void test('the guest agent against the test guest: info, OS, interfaces, file systems, exec, shutdown', { timeout: 400_000 }, async (t) => {
  const qemu = await startQemu(t, true);
  const qmp = await connectQmp(qemu);
  t.after(() => qmp.close());
  const socket = qemu.plan.sockets.guestAgent ?? '';
  let agent: GuestAgentClient | undefined;
  const deadline = Date.now() + 300_000;
  while (agent === undefined) {
    const candidate = new GuestAgentClient({ path: socket, logger, syncTimeoutMs: 2000 });
    try {
      await candidate.connect();
      agent = candidate;
    } catch (err) {
      candidate.close();
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
  t.after(() => agent.close());

  await agent.ping();
  const info = await agent.info();
  assert.equal(info.version, '7.2.22');
  assert.ok(info.supported_commands.some((c) => c.name === 'guest-exec' && c.enabled));
  const os = await agent.osInfo();
  assert.equal(os.id, 'debian');
  assert.equal(os['version-id'], '12');
  const deadlineIp = Date.now() + 60_000;
  let ifaces = await agent.networkInterfaces();
  while (!ifaces.some((i) => i['ip-addresses']?.some((ip) => ip['ip-address'] === '10.0.2.15')) && Date.now() < deadlineIp) {
    await sleep(500);
    ifaces = await agent.networkInterfaces();
  }
  const eth = ifaces.find((i) => i['hardware-address'] === '52:54:00:4b:56:02');
  assert.ok(eth?.['ip-addresses']?.some((ip) => ip['ip-address'] === '10.0.2.15'), JSON.stringify(ifaces));
  assert.ok(Array.isArray(await agent.users()));
  const fs = await agent.filesystems().catch((err: unknown) => err);
  assert.ok(Array.isArray(fs) || fs instanceof AgentCommandError, `guest-get-fsinfo: ${String(fs)}`);
  assert.equal(await agent.fsfreezeStatus(), 'thawed');

  const pid = await agent.exec({ path: '/bin/echo', args: ['hello', 'from', 'exec'], captureOutput: true });
  let status = await agent.execStatus(pid);
  while (!status.exited) {
    await sleep(100);
    status = await agent.execStatus(pid);
  }
  assert.equal(status.exitcode, 0);
  assert.equal(Buffer.from(status['out-data'] ?? '', 'base64').toString(), 'hello from exec\n');

  await agent.shutdown('powerdown');
  const ac = new AbortController();
  const [code] = await Promise.race([qemu.exited, sleep(120_000, ['timeout'], { signal: ac.signal })]).finally(() => ac.abort());
  assert.equal(code, 0, 'QEMU exits 0 after the guest powers off');
});

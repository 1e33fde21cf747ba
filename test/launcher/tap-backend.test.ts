// The bridge binding for real: inside a throwaway network namespace with a bridge, the
// launcher's tap preparation creates the tap and QEMU (the launcher's command line)
// attaches the guest NIC to it with the spec's MAC.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { z } from 'zod';
import { prepareTap } from '../../launcher/src/network/tap.ts';
import type { IpRunner } from '../../launcher/src/network/tap.ts';
import { buildQemuArgs } from '../../launcher/src/qemu/command-line.ts';
import { QmpClient } from '../../launcher/src/qmp/client.ts';
import { emptyReturnSchema, queryStatusSchema } from '../../launcher/src/qmp/messages.ts';

const run = promisify(execFile);

void test('a bridge-bound NIC runs on a tap the launcher prepared', { timeout: 120_000 }, async (t) => {
  const ns = `kv-tapq-${process.pid}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-tap-'));
  await run('ip', ['netns', 'add', ns]);
  t.after(async () => {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const ip: IpRunner = async (args) => (await run('ip', ['-n', ns, ...args])).stdout;
  await ip(['link', 'add', 'br0', 'type', 'bridge']);
  await ip(['link', 'set', 'br0', 'up']);
  assert.equal(await prepareTap({ name: 'tap-br', bridge: 'br0' }, ip), true);

  const qmpSocket = path.join(dir, 'qmp.sock');
  const args = buildQemuArgs({
    guestName: 'kv-test_tap',
    machineType: 'q35',
    accelerator: 'tcg',
    cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
    memory: { sizeMiB: 64 },
    disks: [],
    interfaces: [{ name: 'br', model: 'virtio', backend: 'tap', tapDevice: 'tap-br', macAddress: '52:54:00:4b:56:03' }],
    hostDevices: [],
    sockets: { qmp: qmpSocket, serial: path.join(dir, 'serial.sock') },
  });
  const qemu = spawn('ip', ['netns', 'exec', ns, 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = once(qemu, 'exit');
  t.after(async () => {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
  });

  let qmp: QmpClient | undefined;
  const deadline = Date.now() + 60_000;
  while (qmp === undefined) {
    try {
      qmp = await QmpClient.connect({ path: qmpSocket, logger: pino({ level: 'silent' }) });
    } catch (err) {
      if (Date.now() > deadline || qemu.exitCode !== null) throw new Error(`QEMU did not start: ${stderr}`, { cause: err });
      await sleep(100);
    }
  }
  t.after(() => qmp.close());
  assert.equal((await qmp.execute('query-status', undefined, queryStatusSchema)).status, 'running');
  const network = await qmp.execute('human-monitor-command', { 'command-line': 'info network' }, z.string());
  assert.match(network, /ifname=tap-br/);
  assert.match(network, /macaddr=52:54:00:4b:56:03/);
  const tap = JSON.parse(await ip(['-j', 'link', 'show', 'dev', 'tap-br'])) as { master?: string; flags: string[] }[];
  assert.equal(tap[0]?.master, 'br0');
  await qmp.execute('quit', undefined, emptyReturnSchema).catch(() => undefined);
  await exited;
});

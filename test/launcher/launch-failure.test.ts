// A launch whose QEMU cannot start, in this process as a node agent runs launches (ADR
// 0136): nothing is left behind once launch() rejects — the API no longer listens and
// the storage lease it took (on a real file, the production timings) is no longer
// renewed, so it expires for the VM's next launcher. A launcher process would exit here;
// an agent runs on.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { parseLauncherConfig } from '../../launcher/src/config.ts';
import { launch } from '../../launcher/src/launch.ts';
import { createSharedVm, launcherConfig, removeSharedVm } from '../support/launcher-process.ts';
import { freeLoopbackPort } from '../support/loopback-port.ts';
import { leaseRecord, R_MS, withLease } from './lease-support.ts';

/** Whether something accepts connections at 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

void test('a launch whose QEMU cannot start closes its API and stops renewing its lease', { timeout: 120_000 }, async (t) => {
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const stateDir = await mkdtemp(path.join(tmpdir(), 'kv-launch-failure-'));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const port = await freeLoopbackPort();
  const base = withLease(vm, 'pod-failing')(launcherConfig(vm, { mode: 'run', address: '127.0.0.1', tokenFile: path.join(stateDir, 'token'), stateDir }));
  const config = parseLauncherConfig({ ...base, listen: { address: '127.0.0.1', port }, qemu: { ...base.qemu, binary: path.join(stateDir, 'no-such-qemu') } }, 'test');
  // The API listens while the lease is acquired (2·R), before QEMU is to start.
  let seen = false;
  let done = false;
  const watching = (async (): Promise<void> => {
    while (!seen && !done) {
      seen = await listening(port);
      await sleep(20);
    }
  })();
  await assert.rejects(launch({ config, token: vm.token, logger: pino({ level: 'silent' }) }), /no-such-qemu|ENOENT|spawn/);
  done = true;
  await watching;
  assert.ok(seen, 'the API listened while the launch went on');
  assert.equal(await listening(port), false, 'the API no longer listens');
  const after = await leaseRecord(vm);
  assert.equal(after?.holder, 'pod-failing', 'the lease was taken before QEMU was to start');
  await sleep(3 * R_MS);
  assert.deepEqual(await leaseRecord(vm), after, 'nobody renews it: it expires for the next launcher');
});

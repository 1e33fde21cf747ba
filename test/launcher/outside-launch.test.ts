// launch() from outside the pod, as the node agent runs it (ADRs 0130-0132), against real
// QEMU and the test guest. The pod is a process tree in network, mount and PID
// namespaces of its own: its network namespace is a peer host (test/support/netns.ts),
// its state directory and disks live on mounts only it sees, and its PID 1 is
// launcher/pod/vm-pod.sh. This process holds the pod's root and reaches every file
// through it; the launcher API listens at the pod's address from here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { LauncherClient, MigrationClient, type Status } from '@keyvirt/launcher/api';
import { parseLauncherConfig } from '../../launcher/src/config.ts';
import { launch } from '../../launcher/src/launch.ts';
import { PodHost } from '../../launcher/src/pod/pod-host.ts';
import { PodRoot } from '../../launcher/src/pod/pod-root.ts';
import { childRunning, VM_POD_SCRIPT } from '../support/hosting-pod.ts';
import { createSharedVm, launcherConfig, mintMigrationTls, removeSharedVm } from '../support/launcher-process.ts';
import { createPeerHost } from '../support/netns.ts';
import { until } from '../support/waits.ts';

const BOOT_TIMEOUT_MS = 180_000;
const POD = '/mnt/kv-pod';

void test('launch() outside the pod runs the guest in the pod, with the API at the pod address', { timeout: 600_000 }, async (t) => {
  const seedValue = `outside-${Date.now().toString(36)}`;
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const peer = await createPeerHost();
  t.after(() => peer.destroy());
  const bootDir = path.dirname(vm.guest.disk);
  const setup = [
    `mount -t tmpfs tmpfs /mnt`,
    `mkdir -p ${POD}/state ${POD}/disks/root ${POD}/disks/boot`,
    `mount --bind ${vm.storageDir} ${POD}/disks/root`,
    `mount --bind ${bootDir} ${POD}/disks/boot && mount -o remount,bind,ro ${POD}/disks/boot`,
    `exec bash ${VM_POD_SCRIPT}`,
  ].join(' && ');
  const child = spawn('ip', ['netns', 'exec', peer.name, 'unshare', '--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', 'sh', '-c', setup], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH, KEYVIRT_STATE_DIR: `${POD}/state`, KEYVIRT_GRACE_SECONDS: '60' },
  });
  let podOutput = '';
  child.stderr.on('data', (c: Buffer) => (podOutput += c.toString()));
  const podExited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    child.kill('SIGKILL');
    await podExited;
  });
  // The pod's PID 1: the script, under unshare (which `ip netns exec` became).
  const init = await childRunning(child.pid ?? -1, 'vm-pod.sh');
  assert.equal(existsSync(POD), false, 'the pod mounts are visible outside the pod');

  const root = await PodRoot.open(`/proc/${String(init)}/root`);
  t.after(() => root.close());
  const state = await until('the pod state directory', 10_000, () => root.directory(`${POD}/state`).catch(() => undefined));
  t.after(() => state.close());
  const podHost = new PodHost({ stateDir: state.descriptorPath, logger: pino({ level: 'silent' }) });
  await until('the pod FIFO', 10_000, async () => ((await podHost.podAlive()) ? true : undefined));

  const base = launcherConfig(vm, { mode: 'run', address: peer.address, tokenFile: `${POD}/token`, stateDir: `${POD}/state` });
  const config = parseLauncherConfig(
    {
      ...base,
      template: { ...base.template, cloudInit: { userData: `#cloud-config\nkeyvirt-test-value: ${seedValue}\n` } },
      disks: {
        boot: { path: `${POD}/disks/boot/${path.basename(vm.guest.disk)}`, format: 'qcow2' },
        root: { path: `${POD}/disks/root/${path.basename(vm.disk)}`, format: vm.diskFormat },
      },
      qemu: { ...base.qemu, host: 'pod' },
    },
    'test',
  );
  const launched = await launch({ config, token: vm.token, logger: pino({ level: 'warn' }), outside: { root, netns: `/proc/${String(init)}/ns/net` }, podHost });
  t.after(() => launched.server.close());
  assert.equal(launched.address.address, peer.address);
  const client = new LauncherClient({ baseUrl: `http://${peer.address}:${String(launched.address.port)}`, token: vm.token });

  const running = await until('Running with the guest agent', BOOT_TIMEOUT_MS, async () => {
    const s: Status | undefined = await client.status().catch(() => undefined);
    if (s?.phase === 'Failed') throw new Error(`the VM failed: ${s.message ?? ''}\n${podOutput}`);
    return s?.phase === 'Running' && s.guestAgent.connected && s.guest.os?.id === 'debian' ? s : undefined;
  });
  t.diagnostic(`accelerator=${running.accelerator}`);

  await t.test('the seed and the serial log are the pod files', async () => {
    const serial = await state.openFile('serial.log', constants.O_RDONLY);
    const text = await serial.readFile('utf8');
    await serial.close();
    assert.match(text, new RegExp(`keyvirt-test-value: ${seedValue}`));
    const seed = await state.openFile('seed.iso', constants.O_RDONLY);
    assert.ok((await seed.stat()).size > 0);
    await seed.close();
  });

  await t.test("an outgoing migration stages its TLS files in the pod for QEMU (ADR 0137); a target that refuses fails it and the guest runs on", async () => {
    const migration = new MigrationClient({ baseUrl: `http://${peer.address}:${String(launched.address.port)}`, token: vm.token });
    const credentials = await mintMigrationTls(peer.address);
    await migration.start({ target: { host: peer.address, port: 1 }, tls: credentials.source });
    const result = await until('the migration ended', 60_000, async () => (await migration.current()).result ?? undefined);
    assert.equal(result.phase, 'Failed');
    assert.doesNotMatch(result.message ?? '', /TLS credentials/, 'QEMU loaded the credentials staged in the pod');
    assert.equal((await client.status()).phase, 'Running');
    const left = (await readdir(state.descriptorPath)).filter((n) => n.startsWith('migration-tls-'));
    assert.deepEqual(left, [], 'the TLS files are gone from the pod once QEMU loaded them');
  });

  await t.test('the pod SIGTERM shuts the guest down; the pod exits with the code given', async () => {
    process.kill(init, 'SIGTERM');
    await podHost.stopRequested(AbortSignal.timeout(10_000));
    await launched.supervisor.shutdown(60_000);
    const final = await launched.supervisor.finished();
    assert.deepEqual([final.phase, final.reason], ['Stopped', 'GuestShutdown']);
    await podHost.exitWith(0);
    assert.equal(await podExited, 0);
  });
});

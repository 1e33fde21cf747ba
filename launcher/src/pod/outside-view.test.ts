import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseLauncherConfig } from '../config.ts';
import type { LauncherConfigInput } from '../api/config.ts';
import { outsideRefusal, podTlsStaging } from './outside-view.ts';
import { PodRoot } from './pod-root.ts';

function config(change: (c: LauncherConfigInput) => LauncherConfigInput = (c) => c): ReturnType<typeof parseLauncherConfig> {
  const base: LauncherConfigInput = {
    apiVersion: 'launcher.keyvirt.io/v1',
    vm: { name: 'vm', namespace: 'ns', uid: 'uid-1' },
    template: {
      cpu: { sockets: 1, cores: 1, threads: 1 },
      memory: { size: '256Mi' },
      disks: [{ name: 'root', persistentVolumeClaim: { claimName: 'root' } }],
      interfaces: [{ name: 'default', binding: 'masquerade' }],
    },
    disks: { root: { path: '/var/lib/keyvirt/disks/root/disk.img', format: 'raw' } },
    tokenFile: '/var/run/keyvirt/launcher/token',
    stateDir: '/var/run/keyvirt/state',
    qemu: { host: 'pod' },
  };
  return parseLauncherConfig(change(base), 'test');
}

void test('a launcher outside the pod takes a plain VM and refuses what still needs it in the pod, naming it', () => {
  assert.equal(outsideRefusal(config()), undefined);
  assert.match(outsideRefusal(config((c) => ({ ...c, qemu: { host: 'launcher' } }))) ?? '', /qemu.host must be "pod"/);
  assert.match(outsideRefusal(config((c) => ({ ...c, mode: 'migration-target' }))) ?? '', /migration target/);
  // An HA VM runs outside its pod too (ADR 0136): the lease is reached through the pod's mount.
  assert.equal(outsideRefusal(config((c) => ({ ...c, lease: { path: '/var/lib/keyvirt/lease/lease', holderId: 'pod-1' } }))), undefined);
  const bridged = config((c) => ({
    ...c,
    template: { ...c.template, interfaces: [{ name: 'lan', binding: 'bridge', macAddress: '52:54:00:00:00:01' }] },
    interfaces: { lan: { bridge: 'br0', tapDevice: 'tap0' } },
  }));
  assert.match(outsideRefusal(bridged) ?? '', /interface lan/);
});

void test("an outgoing migration's TLS files go to a private directory of the pod's held state directory, and are gone after", async (t) => {
  const podRoot = await mkdtemp(path.join(tmpdir(), 'kv-pod-root-'));
  t.after(() => rm(podRoot, { recursive: true, force: true }));
  await mkdir(path.join(podRoot, 'var/run/keyvirt/state'), { recursive: true });
  const root = await PodRoot.open(podRoot);
  t.after(() => root.close());
  const state = await root.directory('/var/run/keyvirt/state');
  t.after(() => state.close());
  const staging = podTlsStaging(state);
  const staged = await staging.stage('client', new Map([['ca-cert.pem', 'CA'], ['client-key.pem', 'KEY']]));
  assert.match(staged.dir, /^\/var\/run\/keyvirt\/state\/migration-tls-client-[0-9a-f]{16}$/, "QEMU's path, in the pod");
  const onDisk = path.join(podRoot, staged.dir);
  assert.equal((await stat(onDisk)).mode & 0o777, 0o700);
  assert.equal(await readFile(path.join(onDisk, 'client-key.pem'), 'utf8'), 'KEY');
  assert.equal((await stat(path.join(onDisk, 'client-key.pem'))).mode & 0o777, 0o600);
  await staged.remove();
  assert.deepEqual(await readdir(path.join(podRoot, 'var/run/keyvirt/state')), []);
  // A state directory the pod swapped for a link is never written through: the held
  // descriptor is the directory, whatever its path names now.
  const elsewhere = await mkdtemp(path.join(tmpdir(), 'kv-elsewhere-'));
  t.after(() => rm(elsewhere, { recursive: true, force: true }));
  await rename(path.join(podRoot, 'var/run/keyvirt/state'), path.join(podRoot, 'var/run/keyvirt/state.old'));
  await symlink(elsewhere, path.join(podRoot, 'var/run/keyvirt/state'));
  const again = await staging.stage('client', new Map([['ca-cert.pem', 'CA']]));
  assert.deepEqual(await readdir(elsewhere), [], 'nothing written where the link points');
  assert.equal((await readdir(path.join(podRoot, 'var/run/keyvirt/state.old'))).length, 1);
  await again.remove();
});

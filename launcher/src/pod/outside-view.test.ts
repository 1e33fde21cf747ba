import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLauncherConfig } from '../config.ts';
import type { LauncherConfigInput } from '../api/config.ts';
import { outsideRefusal } from './outside-view.ts';

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

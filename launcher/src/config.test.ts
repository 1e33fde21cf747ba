import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configPathFrom, ConfigError, parseLauncherConfig } from './config.ts';

const valid = {
  apiVersion: 'launcher.keyvirt.io/v1',
  vm: { name: 'web-1', namespace: 'prod', uid: 'u-1' },
  template: { memory: { size: '1Gi' }, disks: [{ name: 'root', persistentVolumeClaim: { claimName: 'root' } }] },
  disks: { root: { path: '/var/run/kv/disks/root/disk.img' } },
  tokenFile: '/var/run/kv/token',
  stateDir: '/var/run/kv/state',
};

void test('a minimal configuration gets its defaults', () => {
  const config = parseLauncherConfig(valid, 'test');
  assert.equal(config.mode, 'run');
  assert.equal(config.listen.port, 8443);
  assert.equal(config.terminationGracePeriodSeconds, 180);
  assert.equal(config.allowEmulation, false);
  assert.equal(config.template.cpu.model, 'host-model');
  assert.equal(config.template.guestAgent, true);
  assert.equal(config.qemu.binary, 'qemu-system-x86_64');
});

const invalid: { name: string; patch: Record<string, unknown>; field: RegExp }[] = [
  { name: 'wrong apiVersion', patch: { apiVersion: 'v0' }, field: /apiVersion/ },
  { name: 'relative token file', patch: { tokenFile: 'token' }, field: /tokenFile/ },
  { name: 'bad memory quantity', patch: { template: { memory: { size: 'lots' } } }, field: /template\.memory\.size/ },
  { name: 'bad PCI address', patch: { hostDevices: { gpu: '3b:00.0' } }, field: /hostDevices\.gpu/ },
  { name: 'bad mode', patch: { mode: 'sideways' }, field: /mode/ },
];

for (const c of invalid) {
  void test(`config: ${c.name} is rejected naming the field`, () => {
    assert.throws(() => parseLauncherConfig({ ...valid, ...c.patch }, 'test'), (err: unknown) => err instanceof ConfigError && c.field.test(err.message));
  });
}

void test('the config path comes from --config, --config= or the environment', () => {
  assert.equal(configPathFrom(['--config', '/a.json'], {}), '/a.json');
  assert.equal(configPathFrom(['--config=/b.json'], {}), '/b.json');
  assert.equal(configPathFrom([], { KEYVIRT_LAUNCHER_CONFIG: '/c.json' }), '/c.json');
  assert.throws(() => configPathFrom([], {}), ConfigError);
});

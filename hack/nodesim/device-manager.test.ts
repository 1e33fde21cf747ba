// The simulator's kubelet side against the node agent's device plugins, over real gRPC
// unix sockets in a temporary directory; the "host /dev" is a directory whose kvm entry
// points at a real character device (/dev/null), so that it can disappear and come back.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { runDevicePlugins } from '../../operator/src/node-agent/device-plugin/device-plugins.ts';
import { DEVICE_KINDS, KVM_RESOURCE, TUN_RESOURCE } from '../../operator/src/node-agent/device-plugin/devices.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { DeviceManager, DevicesNotReadyError, registrationProblem } from './device-manager.ts';
import { materialiseVolumes, VolumeNotReadyError } from './volumes.ts';

const log = pino({ level: process.env.KEYVIRT_LOG_LEVEL ?? 'silent' });

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

void describe('device manager and the node agent device plugins', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-devices-'));
  const dir = path.join(root, 'device-plugins');
  const dev = path.join(root, 'dev');
  const plugins = new AbortController();
  let changes = 0;
  let manager = new DeviceManager({ dir, log, onChange: () => changes++ });
  let running: Promise<void> | undefined;

  before(async () => {
    fs.mkdirSync(path.join(dev, 'net'), { recursive: true });
    fs.symlinkSync('/dev/null', path.join(dev, 'kvm'));
    await manager.start();
    running = runDevicePlugins({ pluginDir: dir, devRoot: dev, units: 4, log, tickMs: 100 }, plugins.signal);
  });

  after(async () => {
    plugins.abort();
    await running;
    await manager.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  void it('registers only the devices present and advertises their units', async () => {
    await until('kvm units', () => (manager.resources().allocatable[KVM_RESOURCE] === '4' ? true : undefined));
    assert.deepEqual(manager.resources(), { capacity: { [KVM_RESOURCE]: '4' }, allocatable: { [KVM_RESOURCE]: '4' } });
    assert.ok(changes > 0);
    assert.ok(fs.existsSync(path.join(dir, 'keyvirt-kvm.sock')));
    assert.ok(!fs.existsSync(path.join(dir, 'keyvirt-tun.sock')));
  });

  void it('allocates the device node read-write and holds units per pod', async () => {
    const got = await manager.allocate('pod-a', 'launcher', { [KVM_RESOURCE]: '1', memory: '1Gi' });
    assert.deepEqual(got.devices, [{ hostPath: '/dev/kvm', containerPath: '/dev/kvm', permissions: 'rw' }]);
    assert.deepEqual(got.mounts, []);
    await manager.allocate('pod-b', 'launcher', { [KVM_RESOURCE]: '3' });
    await assert.rejects(manager.allocate('pod-c', 'launcher', { [KVM_RESOURCE]: '1' }), DevicesNotReadyError);
    manager.release('pod-a');
    await manager.allocate('pod-c', 'launcher', { [KVM_RESOURCE]: '1' });
    manager.release('pod-b');
    manager.release('pod-c');
  });

  void it('leaves resources no plugin registered alone', async () => {
    const got = await manager.allocate('pod-d', 'launcher', { [TUN_RESOURCE]: '1', 'keyvirt.io/pci-10de-1eb8': '1' });
    assert.deepEqual(got.devices, []);
  });

  void it('turns every unit Unhealthy when the device node disappears, and back', async () => {
    fs.rmSync(path.join(dev, 'kvm'));
    await until('no allocatable kvm', () => (manager.resources().allocatable[KVM_RESOURCE] === '0' ? true : undefined));
    assert.equal(manager.resources().capacity[KVM_RESOURCE], '4');
    await assert.rejects(manager.allocate('pod-e', 'launcher', { [KVM_RESOURCE]: '1' }), DevicesNotReadyError);
    fs.symlinkSync('/dev/null', path.join(dev, 'kvm'));
    await until('kvm back', () => (manager.resources().allocatable[KVM_RESOURCE] === '4' ? true : undefined));
  });

  void it('picks up a device that appears later', async () => {
    fs.symlinkSync('/dev/zero', path.join(dev, 'net/tun'));
    await until('tun units', () => (manager.resources().allocatable[TUN_RESOURCE] === '4' ? true : undefined));
    const got = await manager.allocate('pod-f', 'launcher', { [TUN_RESOURCE]: '1' });
    assert.deepEqual(got.devices, [{ hostPath: '/dev/net/tun', containerPath: '/dev/net/tun', permissions: 'rw' }]);
  });

  void it('registers again when the kubelet restarts (kubelet.sock recreated, directory emptied)', async () => {
    await manager.stop();
    manager = new DeviceManager({ dir, log, onChange: () => changes++ });
    await manager.start();
    assert.deepEqual(manager.registered(), []);
    await until('re-registration', () => (manager.registered().sort().join() === [KVM_RESOURCE, TUN_RESOURCE].sort().join() ? true : undefined));
    await until('kvm units again', () => (manager.resources().allocatable[KVM_RESOURCE] === '4' ? true : undefined));
    const got = await manager.allocate('pod-g', 'launcher', { [KVM_RESOURCE]: '1' });
    assert.equal(got.devices[0]?.hostPath, '/dev/kvm');
  });
});

void describe('registrations the device manager refuses', () => {
  const ok = { version: 'v1beta1', endpoint: 'keyvirt-kvm.sock', resource_name: KVM_RESOURCE, options: null };
  const cases: { name: string; change: Partial<typeof ok>; problem?: RegExp }[] = [
    { name: 'the node agent plugin', change: {} },
    { name: 'every device kind', change: { resource_name: DEVICE_KINDS[2]?.resource ?? '' } },
    { name: 'another API version', change: { version: 'v1alpha' }, problem: /version v1alpha is not supported/ },
    { name: 'a name without a domain', change: { resource_name: 'kvm' }, problem: /not an extended resource name/ },
    { name: 'a kubernetes.io name', change: { resource_name: 'kubernetes.io/kvm' }, problem: /not an extended resource name/ },
    { name: 'a kubernetes.io subdomain', change: { resource_name: 'node.kubernetes.io/kvm' }, problem: /not an extended resource name/ },
    { name: 'an endpoint outside the directory', change: { endpoint: '../../run/evil.sock' }, problem: /not a socket file name/ },
    { name: 'an absolute endpoint', change: { endpoint: '/run/evil.sock' }, problem: /not a socket file name/ },
    { name: "the kubelet's own socket", change: { endpoint: 'kubelet.sock' }, problem: /not a socket file name/ },
  ];
  for (const c of cases) {
    void it(`${c.problem === undefined ? 'accepts' : 'refuses'} ${c.name}`, () => {
      const problem = registrationProblem({ ...ok, ...c.change });
      if (c.problem === undefined) assert.equal(problem, undefined);
      else assert.match(problem ?? '', c.problem);
    });
  }
});

void describe("the kubelet's device-plugin directory as a pod's hostPath", () => {
  const api = {
    readSecret: () => Promise.resolve(undefined),
    readConfigMap: () => Promise.resolve(undefined),
    readPersistentVolumeClaim: () => Promise.resolve(undefined),
    readPersistentVolume: () => Promise.resolve(undefined),
    requestServiceAccountToken: () => Promise.resolve(''),
  };
  const pod = (hostPath: string): V1Pod => ({ metadata: { namespace: 'ns' }, spec: { containers: [], volumes: [{ name: 'plugins', hostPath: { path: hostPath, type: 'Directory' } }] } });

  for (const hostPath of ['/var/lib/kubelet/device-plugins', '/var/lib/kubelet/device-plugins/', '/var/lib/kubelet/../kubelet/device-plugins']) {
    void it(`${hostPath} is this node's own directory`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-dp-'));
      try {
        const volumes = await materialiseVolumes(api, pod(hostPath), path.join(dir, 'volumes'), undefined, dir);
        assert.equal(volumes.get('plugins')?.hostPath, dir);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  void it('another kubelet path is not', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-dp-'));
    try {
      await assert.rejects(materialiseVolumes(api, pod('/var/lib/kubelet/device-plugins-not'), path.join(dir, 'volumes'), undefined, dir), VolumeNotReadyError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

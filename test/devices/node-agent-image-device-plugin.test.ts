// The node agent image (operator/src/node-agent/Containerfile) serving its device plugins:
// podman runs it with a directory of this host bind-mounted where the chart's DaemonSet
// mounts the kubelet's device-plugin directory, and with the host's /dev read-only at
// /host/dev; the node simulator's kubelet side (hack/nodesim/device-manager.ts) serves
// kubelet.sock in that directory. The image carries the .proto and gRPC: the plugins
// register, the units of the host's devices are listed, and Allocate hands out /dev/kvm,
// though the agent has no API access here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { GenericContainer, Wait } from 'testcontainers';
import { DeviceManager } from '../../hack/nodesim/device-manager.ts';
import { KVM_RESOURCE } from '../../operator/src/node-agent/device-plugin/resource-names.ts';
import { builtImage, containerOutput, NEVER_PULL, startPodmanService, type PodmanService } from '../images/podman-service.ts';

const hasKvm = fs.existsSync('/dev/kvm');

void describe('node agent image: device plugins', { timeout: 20 * 60_000, skip: !hasKvm && 'this host has no /dev/kvm' }, () => {
  let ref: string;
  let podman: PodmanService | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-image-dp-'));
  const manager = new DeviceManager({ dir, log: pino({ level: 'silent' }), onChange: () => undefined });

  before(async () => {
    ref = await builtImage('node-agent');
    podman = await startPodmanService();
    await manager.start();
  });
  after(async () => {
    await manager.stop();
    await podman?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  void it('registers with the kubelet side through the bind-mounted directory and allocates /dev/kvm', async () => {
    const output = containerOutput();
    const container = await new GenericContainer(ref)
      .withPullPolicy(NEVER_PULL)
      .withNetworkMode('host')
      .withSecurityOpt('no-new-privileges')
      .withBindMounts([
        { source: '/dev', target: '/host/dev', mode: 'ro' },
        { source: dir, target: '/var/lib/kubelet/device-plugins', mode: 'rw' },
      ])
      .withEnvironment({
        NODE_NAME: 'keyvirt-image-device-plugin',
        KEYVIRT_DEV_ROOT: '/host/dev',
        KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: '3600',
        KEYVIRT_DEVICE_PLUGIN_UNITS: '5',
      })
      .withLogConsumer((stream) => output.consume(stream))
      .withWaitStrategy(Wait.forLogMessage('device plugins starting'))
      .withStartupTimeout(60_000)
      .start();
    try {
      const deadline = Date.now() + 60_000;
      while (manager.resources().allocatable[KVM_RESOURCE] !== '5') {
        if (Date.now() > deadline) assert.fail(`no registration from the image within 60 s; the kubelet side has ${JSON.stringify(manager.resources())}`);
        await sleep(200);
      }
      const got = await manager.allocate('pod-uid', 'launcher', { [KVM_RESOURCE]: '1' });
      assert.deepEqual(got.devices, [{ hostPath: '/dev/kvm', containerPath: '/dev/kvm', permissions: 'rw' }]);
      await output.waitFor(/registered with the kubelet/, 10_000);
      // It has no API access here (no kubeconfig, no service account): it says so, and serves the plugins all the same.
      await output.waitFor(/no API access/, 10_000);
    } finally {
      await container.stop({ timeout: 20_000 });
    }
  });
});

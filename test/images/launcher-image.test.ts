// The launcher image (launcher/Containerfile) run by podman through testcontainers, as a
// launcher pod runs it: root without capabilities, no new privileges, a read-only root
// file system, /dev/kvm passed in as a device, the configuration the operator would
// write, the VM's disk and the test guest's boot disk mounted in. It must boot the guest
// from its disk through the firmware with the QEMU and Node.js the
// image carries and report Running with the guest agent. The accelerator is whatever
// the launcher finds: KVM when the host CPU advertises vmx/svm and /dev/kvm opens in
// the container, TCG otherwise (on this host: TCG, see REFERENCES). The image's pod
// script (ADR 0131) must hold QEMU as the container's PID 1 for a launcher outside it.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import { LauncherClient, type Status } from '@keyvirt/launcher/api';
import { createSharedVm, launcherConfig, removeSharedVm, startLauncher, type SharedVm } from '../support/launcher-process.ts';
import { builtImage, containerOutput, NEVER_PULL, startPodmanService, type PodmanService } from './podman-service.ts';

const BOOT_TIMEOUT_MS = 180_000;

/** testcontainers has no `--device`; the Docker API's HostConfig.Devices does it. */
const DeviceMapping = z.object({ PathOnHost: z.string(), PathInContainer: z.string(), CgroupPermissions: z.string() });

class DeviceContainer extends GenericContainer {
  withDevice(device: string): this {
    // (HostConfig.Devices is untyped in dockerode's types: only this class sets it.)
    const devices = z.array(DeviceMapping).parse(this.hostConfig.Devices ?? []);
    this.hostConfig.Devices = [...devices, { PathOnHost: device, PathInContainer: device, CgroupPermissions: 'rwm' }];
    return this;
  }

  /** The launcher pod's `readOnlyRootFilesystem: true`. */
  withReadOnlyRootFilesystem(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }
}

/**
 * The image as a launcher pod runs it: root without capabilities, no new privileges, a
 * read-only root, /dev/kvm; `dir` (configuration or state) and the VM's disk mounted
 * read-write, the test guest's boot disk read-only, as the guest-boot claim is mounted.
 */
function launcherPodContainer(ref: string, network: 'host' | 'none', dir: string, vm: SharedVm): DeviceContainer {
  return new DeviceContainer(ref)
    .withPullPolicy(NEVER_PULL)
    .withNetworkMode(network)
    .withDevice('/dev/kvm')
    .withReadOnlyRootFilesystem()
    .withDroppedCapabilities('ALL')
    .withSecurityOpt('no-new-privileges')
    .withBindMounts([
      { source: dir, target: dir, mode: 'rw' },
      { source: vm.storageDir, target: vm.storageDir, mode: 'rw' },
      { source: path.dirname(vm.guest.disk), target: path.dirname(vm.guest.disk), mode: 'ro' },
    ]);
}

async function hostHasHardwareVirtualization(): Promise<boolean> {
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(await readFile('/proc/cpuinfo', 'utf8'));
}

async function waitRunningWithAgent(client: LauncherClient, timeoutMs: number): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  let last: Status | undefined;
  for (;;) {
    last = await client.status().catch(() => last);
    if (last?.phase === 'Running' && last.guestAgent.connected) return last;
    if (last?.phase === 'Failed' || last?.phase === 'Stopped') throw new Error(`the launcher ended ${last.phase}: ${JSON.stringify(last)}`);
    if (Date.now() > deadline) throw new Error(`not Running with the guest agent within ${timeoutMs} ms; last status ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

void describe('launcher image', { timeout: 600_000 }, () => {
  let ref = '';
  let podman: PodmanService | undefined;
  let vm: SharedVm | undefined;
  let dir = '';

  before(async () => {
    ref = await builtImage('launcher');
    podman = await startPodmanService();
    vm = await createSharedVm({ diskFormat: 'raw' });
    dir = await mkdtemp(path.join(tmpdir(), 'kv-launcher-image-'));
  });
  after(async () => {
    await podman?.stop();
    if (vm !== undefined) await removeSharedVm(vm);
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('boots the test guest with /dev/kvm passed in and reports Running with the guest agent', async (t) => {
    assert.ok(vm !== undefined);
    const tokenFile = path.join(dir, 'token');
    await writeFile(tokenFile, `${vm.token}\n`, { mode: 0o600 });
    const stateDir = path.join(dir, 'state');
    const configFile = path.join(dir, 'config.json');
    await writeFile(configFile, JSON.stringify(launcherConfig(vm, { mode: 'run', address: '127.0.0.1', tokenFile, stateDir })));
    await chmod(configFile, 0o400);
    const output = containerOutput();
    const container: StartedTestContainer = await launcherPodContainer(ref, 'host', dir, vm)
      .withEnvironment({ KEYVIRT_LOG_LEVEL: 'info' })
      .withCommand(['--config', configFile])
      .withLogConsumer((stream) => output.consume(stream))
      .withWaitStrategy(Wait.forLogMessage('launcher API listening'))
      .withStartupTimeout(60_000)
      .start();
    try {
      await output.waitFor(/launcher API listening.*\n/, 10_000);
      const port = output.logField('launcher API listening', 'port');
      assert.equal(typeof port, 'number', `no port in the launcher's log:\n${output.text()}`);
      const client = new LauncherClient({ baseUrl: `http://127.0.0.1:${String(port)}`, token: vm.token });
      const started = Date.now();
      const status = await waitRunningWithAgent(client, BOOT_TIMEOUT_MS);
      const expected = (await hostHasHardwareVirtualization()) ? 'kvm' : 'tcg';
      t.diagnostic(`accelerator ${status.accelerator}; Running with the guest agent ${Date.now() - started} ms after the API listened`);
      assert.equal(status.accelerator, expected);
      assert.ok(status.guestAgent.version !== undefined && status.guestAgent.version !== '', 'the guest agent reports its version');
      // The device reached the container and opens there (the device cgroup allows it).
      const probe = await container.exec(['sh', '-c', 'exec 3<>/dev/kvm && echo opened']);
      assert.equal(probe.output.trim(), 'opened', `/dev/kvm in the container: ${probe.output}`);
      // The QEMU that runs the guest is the image's, inside the container.
      assert.ok(status.qemu.pid !== undefined);
      const qemu = await container.exec(['readlink', `/proc/${status.qemu.pid}/exe`]);
      assert.equal(qemu.output.trim(), '/usr/bin/qemu-system-x86_64');
      const user = await container.exec(['sh', '-c', 'grep ^CapEff /proc/1/status']);
      assert.match(user.output, /CapEff:\s+0+$/m, 'the launcher runs without capabilities');
    } finally {
      await container.stop({ timeout: 20_000 });
    }
  });
  void it('holds QEMU with its pod script as PID 1 for a launcher outside the container (ADR 0131)', async (t) => {
    assert.ok(vm !== undefined);
    const sharedVm = vm;
    const output = containerOutput();
    let container: StartedTestContainer | undefined;
    const launcher = await startLauncher({
      vm: sharedVm,
      name: 'image-pod',
      hostingPod: 'external',
      beforeLaunch: async ({ stateDir }) => {
        await mkdir(stateDir, { recursive: true, mode: 0o700 });
        container = await launcherPodContainer(ref, 'none', stateDir, sharedVm)
          .withEnvironment({ KEYVIRT_STATE_DIR: stateDir, KEYVIRT_GRACE_SECONDS: '60' })
          .withEntrypoint(['/bin/bash', '/opt/keyvirt/launcher/pod/vm-pod.sh'])
          .withLogConsumer((stream) => output.consume(stream))
          .withWaitStrategy(Wait.forSuccessfulCommand(`test -p ${stateDir}/pod.ctl`))
          .withStartupTimeout(60_000)
          .start();
      },
    });
    t.after(() => launcher.dispose());
    t.after(() => container?.stop({ timeout: 1000 }));
    assert.ok(container !== undefined);
    const status = await waitRunningWithAgent(launcher.client, BOOT_TIMEOUT_MS);
    t.diagnostic(`accelerator ${status.accelerator}`);
    assert.ok(status.qemu.pid !== undefined);
    // QEMU is the image's, in the container, a child of the script's watcher.
    const qemu = await container.exec(['readlink', `/proc/${String(status.qemu.pid)}/exe`]);
    assert.equal(qemu.output.trim(), '/usr/bin/qemu-system-x86_64');
    const init = await container.exec(['sh', '-c', 'tr "\\0" " " < /proc/1/cmdline; grep ^CapEff /proc/1/status']);
    assert.match(init.output, /^\/bin\/bash \/opt\/keyvirt\/launcher\/pod\/vm-pod\.sh/);
    assert.match(init.output, /CapEff:\s+0+$/m, 'the pod script runs without capabilities');
    // Stopping the container (SIGTERM to its PID 1) shuts the guest down through the launcher.
    await container.stop({ timeout: 60_000 });
    assert.deepEqual(await launcher.exited, { code: 0, signal: null });
    const ended = launcher.logs().find((l) => l.msg === 'vm ended');
    assert.deepEqual([ended?.phase, ended?.reason], ['Stopped', 'GuestShutdown']);
  });
});

// The guest on the pod network, launcher and node side together against the real
// parts: a pod namespace as a CNI leaves it (pod-sandbox.ts), the node agent's set-up
// code entering it with nsenter, the real launcher inside it without any capability
// (setpriv: empty bounding set, no_new_privs), real QEMU (TCG here) opening the tap, the
// test guest taking its address by DHCP (busybox udhcpc) and running a TCP echo (nc)
// from its user-data.
// masquerade, no ports listed: another pod reaches the guest's port on the pod IP, the
// launcher's own API stays the launcher's, the guest cannot reach the launcher; with a
// port list, a port not on it does not reach the guest.
// bridge: the guest agent reports the pod IP on the guest's NIC, and another pod
// reaches the guest on it while the launcher API still answers on the pod IP.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Status } from '@keyvirt/launcher/api';
import { nsenterRunner, setUpPodNetwork } from '../../operator/src/node-agent/network/pod-network-setup.ts';
import { createSharedVm, removeSharedVm, startLauncher, waitForStatus } from '../support/launcher-process.ts';
import type { LauncherProcess, SharedVm } from '../support/launcher-process.ts';
import { createPodSandbox } from './pod-sandbox.ts';
import type { PodSandbox } from './pod-sandbox.ts';

const run = promisify(execFile);
const ECHO_PORT = 7000;
const ECHO_USER_DATA = `#!/bin/sh\nexec nc -ll -p ${ECHO_PORT} -e /bin/cat\n`;
const GUEST_MAC = '52:54:00:4b:56:21';
const BOOT_TIMEOUT_MS = 240_000;

/** One line through the guest's echo, sent from `netns` to `host`; resolves with the answer (or '' when refused). */
async function echo(netns: string, host: string, port: number, line: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `printf '%s\\n' "$1" | timeout 10 ip netns exec "$2" busybox nc -w 3 "$3" "$4"`, 'echo', line, netns, host, String(port)])
    .catch((err: unknown) => ({ stdout: (err as { stdout?: string }).stdout ?? '' }));
  return stdout.trim();
}

async function eventuallyEcho(netns: string, host: string, line: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await echo(netns, host, ECHO_PORT, line);
    if (got === line || Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Runs `fn` with a namespace whose veth joins the pod's kvbr0 as the guest's tap does (10.0.2.3/24: the guest's segment). */
async function onGuestSegment<T>(sandbox: PodSandbox, fn: (probe: string) => Promise<T>): Promise<T> {
  const probe = `kv-probe-${process.pid % 10_000}`;
  await run('ip', ['netns', 'add', probe]);
  try {
    await run('ip', ['link', 'add', 'kvprobe0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', probe]);
    await run('ip', ['link', 'set', 'kvprobe0', 'netns', sandbox.netns]);
    await run('ip', ['-n', sandbox.netns, 'link', 'set', 'kvprobe0', 'master', 'kvbr0', 'up']);
    await run('ip', ['-n', probe, 'addr', 'add', '10.0.2.3/24', 'dev', 'p0']);
    await run('ip', ['-n', probe, 'link', 'set', 'p0', 'up']);
    return await fn(probe);
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => undefined);
    await run('ip', ['-n', sandbox.netns, 'link', 'del', 'kvprobe0']).catch(() => undefined);
  }
}

function guestIpv4(status: Status): string[] {
  return status.guest.interfaces
    .filter((i) => i.macAddress?.toLowerCase() === GUEST_MAC)
    .flatMap((i) => i.ipAddresses.filter((a) => a.family === 'ipv4').map((a) => a.address));
}

async function startPodLauncher(sandbox: PodSandbox, vm: SharedVm, binding: 'masquerade' | 'bridge', name: string, ports?: { port: number; protocol: 'TCP' | 'UDP' }[]): Promise<LauncherProcess> {
  const outcome = await setUpPodNetwork(nsenterRunner(sandbox.netnsPath), { binding, launcherUid: 0, ports });
  assert.equal(outcome.result, 'prepared');
  return startLauncher({
    vm,
    name,
    // The launcher API answers on the pod IP (its port comes from the pod's ephemeral range).
    address: sandbox.podIp,
    netnsExec: ['ip', 'netns', 'exec', sandbox.netns, 'setpriv', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs'],
    configure: (config) => ({
      ...config,
      listen: { address: '0.0.0.0', port: 0 },
      template: { ...config.template, interfaces: [{ name: 'default', binding, macAddress: GUEST_MAC }] },
      interfaces: { default: { podNetwork: true } },
    }),
  });
}

void describe('the guest on the pod network (real launcher without capabilities, real QEMU)', { timeout: 15 * 60_000 }, () => {
  void describe('masquerade with no ports listed', () => {
    let sandbox: PodSandbox;
    let vm: SharedVm;
    let launcher: LauncherProcess | undefined;
    before(async () => {
      sandbox = await createPodSandbox('m');
      vm = await createSharedVm({ diskFormat: 'raw', userData: ECHO_USER_DATA });
      launcher = await startPodLauncher(sandbox, vm, 'masquerade', 'pod-masq');
    });
    after(async () => {
      await launcher?.dispose();
      await removeSharedVm(vm);
      await sandbox.destroy();
    });

    void it('the guest takes 10.0.2.2 by DHCP and another pod reaches its port on the pod IP', async () => {
      assert.ok(launcher !== undefined);
      const ips = await waitForStatus(launcher, (s) => (guestIpv4(s).length > 0 ? guestIpv4(s) : undefined), BOOT_TIMEOUT_MS, 'the guest agent reporting an address');
      assert.deepEqual(ips, ['10.0.2.2']);
      assert.equal(await eventuallyEcho(sandbox.client.netns, sandbox.podIp, 'through-the-nat', 60_000), 'through-the-nat');
      // Traffic the pod's eth0 carries for the launcher's port still reaches the launcher.
      assert.equal((await launcher.client.status()).phase, 'Running');
      const served = launcher.logs().filter((l) => l.msg === 'DHCP reply sent').map((l) => l.type);
      assert.ok(served.includes('offer') && served.includes('ack'), `DHCP replies: ${served.join(', ')}`);
    });

    void it('the guest cannot reach the launcher (only DHCP is open to it)', async () => {
      assert.ok(launcher !== undefined);
      const port = new URL(launcher.baseUrl).port;
      await onGuestSegment(sandbox, async (probe) => {
        assert.equal(await echo(probe, '10.0.2.2', ECHO_PORT, 'guest-side'), 'guest-side', 'the probe sits on the guest\'s segment');
        const refused = await run('ip', ['netns', 'exec', probe, 'busybox', 'nc', '-w', '3', '10.0.2.1', port]).then(() => false, () => true);
        assert.ok(refused, 'the launcher API is closed to the guest side');
      });
    });
  });

  void describe('masquerade with ports listed', () => {
    let sandbox: PodSandbox;
    let vm: SharedVm;
    let launcher: LauncherProcess | undefined;
    before(async () => {
      sandbox = await createPodSandbox('p');
      vm = await createSharedVm({ diskFormat: 'raw', userData: ECHO_USER_DATA });
      launcher = await startPodLauncher(sandbox, vm, 'masquerade', 'pod-ports', [{ port: 22, protocol: 'TCP' }]);
    });
    after(async () => {
      await launcher?.dispose();
      await removeSharedVm(vm);
      await sandbox.destroy();
    });

    void it('a port not listed does not reach the guest', async () => {
      assert.ok(launcher !== undefined);
      await waitForStatus(launcher, (s) => (guestIpv4(s).length > 0 ? guestIpv4(s) : undefined), BOOT_TIMEOUT_MS, 'the guest agent reporting an address');
      // The guest listens on 7000 (seen from its own segment); only 22 is forwarded.
      await onGuestSegment(sandbox, async (probe) => {
        assert.equal(await eventuallyEcho(probe, '10.0.2.2', 'guest-side', 60_000), 'guest-side');
      });
      assert.equal(await echo(sandbox.client.netns, sandbox.podIp, ECHO_PORT, 'not-forwarded'), '');
    });
  });

  void describe('bridge', () => {
    let sandbox: PodSandbox;
    let vm: SharedVm;
    let launcher: LauncherProcess | undefined;
    before(async () => {
      sandbox = await createPodSandbox('b');
      vm = await createSharedVm({ diskFormat: 'raw', userData: ECHO_USER_DATA });
      launcher = await startPodLauncher(sandbox, vm, 'bridge', 'pod-bridge');
    });
    after(async () => {
      await launcher?.dispose();
      await removeSharedVm(vm);
      await sandbox.destroy();
    });

    void it('the guest agent reports the pod IP on the guest NIC; another pod reaches the guest on it; the launcher API still answers there', async () => {
      assert.ok(launcher !== undefined);
      const ips = await waitForStatus(launcher, (s) => (guestIpv4(s).length > 0 ? guestIpv4(s) : undefined), BOOT_TIMEOUT_MS, 'the guest agent reporting an address');
      assert.deepEqual(ips, [sandbox.podIp]);
      assert.equal(await eventuallyEcho(sandbox.client.netns, sandbox.podIp, 'bridged', 60_000), 'bridged');
      assert.equal((await launcher.client.status()).phase, 'Running');
    });
  });
});

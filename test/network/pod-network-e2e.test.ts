// End to end on the local cluster: the guest on the pod network through the operator.
// A throwaway simulated node runs the chart's node agent (pod network set-up on,
// privileged, in a pod pinned to the node) beside the launcher pods; the real operator
// runs with --pod-network node-agent; launchers run as the operator renders them (no
// capabilities, /dev/net/tun from the node's device plugin); real QEMU (TCG here) boots
// the test guest from its disk, which takes its address by DHCP and runs a TCP echo (nc)
// from its user-data.
// masquerade, no ports listed: the host reaches the guest's port on the pod IP over the
// cluster bridge; the VM's status lists the guest's 10.0.2.2 next to the pod IP.
// bridge: the guest agent reports the pod IP on the guest NIC (status), and the host
// reaches the guest on it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { VirtualMachine } from '@keyvirt/crds';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, launcherPods, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { startChartNodeAgent } from './chart-node-agent.ts';

const run = promisify(execFile);
const ECHO_PORT = 7000;
const ECHO_USER_DATA = `#!/bin/sh\nexec nc -ll -p ${ECHO_PORT} -e /bin/cat\n`;
const BOOT_TIMEOUT_MS = 600_000;


/** One line through the guest's echo from the host; '' when nothing answers. */
async function echo(host: string, line: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `printf '%s\\n' "$1" | timeout 10 busybox nc -w 3 "$2" "$3"`, 'echo', line, host, String(ECHO_PORT)])
    .catch((err: unknown) => ({ stdout: (err as { stdout?: string }).stdout ?? '' }));
  return stdout.trim();
}

function guestAddresses(vm: VirtualMachine): string[] {
  return vm.status?.interfaces?.[0]?.ipAddresses ?? [];
}

void describe('the guest on the pod network through the operator (local cluster, real QEMU)', { timeout: 30 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let node: SimulatedNode | undefined;
  let operator: OperatorProcess | undefined;
  let release: string;
  const clusterScoped: string[][] = [];

  const networkVm = (name: string, binding: 'masquerade' | 'bridge'): ReturnType<typeof testVm> => {
    const vm = testVm(s, guest, { name });
    vm.spec.template.interfaces = [{ name: 'default', binding }];
    vm.spec.template.cloudInit = { userData: ECHO_USER_DATA };
    vm.spec.nodeSelector = { 'kubernetes.io/hostname': node?.name ?? '' };
    vm.spec.tolerations = [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }];
    return vm;
  };

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-net');
    release = `net-${s.runId}`;
    node = await cluster.createNode('kvt-net');
    clusterScoped.push(...startChartNodeAgent(cluster, release, s.namespace, node.name));
    operator = await startSuiteOperator(cluster, s, 'pod-network', ['--pod-network', 'node-agent']);
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await s.cleanup();
    if (node !== undefined) await cluster.deleteNode(node.name);
  });

  void it('masquerade with no ports listed: the host reaches the guest\'s port on the pod IP; status lists 10.0.2.2 beside the pod IP', async (t) => {
    apply(cluster, networkVm('net-masq', 'masquerade'));
    const started = Date.now();
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'net-masq' }, 'Running with the guest\'s address in status',
      (v) => v.status?.phase === 'Running' && guestAddresses(v).includes('10.0.2.2'), BOOT_TIMEOUT_MS);
    const [pod] = launcherPods(cluster, s.namespace, 'net-masq');
    const podIp = pod?.status?.podIP;
    assert.ok(podIp !== undefined);
    assert.equal(vm.status?.interfaces?.[0]?.ipAddress, podIp, 'the primary address is the pod IP');
    t.diagnostic(`masquerade: Running with a DHCP address after ${Date.now() - started} ms (accel=tcg)`);
    const answer = await eventually('the guest echo through the NAT', async () => ((await echo(podIp, 'masq-e2e')) === 'masq-e2e' ? true : undefined), 120_000, 1000);
    assert.equal(answer, true);
  });

  void it('bridge: the guest agent reports the pod IP on the guest NIC, and the host reaches the guest on it', async (t) => {
    apply(cluster, networkVm('net-bridge', 'bridge'));
    const started = Date.now();
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'net-bridge' }, 'Running with the guest\'s address in status',
      (v) => v.status?.phase === 'Running' && guestAddresses(v).some((a) => !a.startsWith('fe80') && a.includes('.')), BOOT_TIMEOUT_MS);
    const [pod] = launcherPods(cluster, s.namespace, 'net-bridge');
    const podIp = pod?.status?.podIP;
    assert.ok(podIp !== undefined);
    assert.ok(guestAddresses(vm).includes(podIp), `the guest has the pod IP ${podIp}: ${guestAddresses(vm).join(', ')}`);
    assert.equal(vm.status?.interfaces?.[0]?.ipAddress, podIp);
    t.diagnostic(`bridge: Running with the pod IP after ${Date.now() - started} ms (accel=tcg)`);
    await eventually('the guest echo on the pod IP', async () => ((await echo(podIp, 'bridge-e2e')) === 'bridge-e2e' ? true : undefined), 120_000, 1000);
  });
});

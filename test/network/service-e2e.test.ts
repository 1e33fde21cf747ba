// End to end on the local cluster: a Service in front of a VM reaches the guest. The real
// operator (--pod-network node-agent) runs the small test guest from its disk behind
// masquerade on a throwaway simulated node whose chart node agent prepares the pod
// network; the guest runs a TCP echo from its user-data. A ClusterIP Service selecting
// the VM's own label (copied onto its launcher pod) maps port 80 to the guest's echo
// port; the host's kube-proxy (iptables) DNATs the ClusterIP to the pod IP, the launcher's
// NAT forwards to the guest. The ClusterIP answers from the host and from another node's
// namespace (whose gateway is the host). A second Service whose selector matches nothing
// gets kube-proxy's reject. Every ClusterIP is dialled only once its route onto the
// cluster bridge, its EndpointSlice and kube-proxy's rules are in place (ADR 0099).
// Real QEMU (TCG here).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clusterLayout, nodeNetNames } from '../../hack/cluster/layout.ts';
import { defaultNodeNames, nodeIndexOf, type SimulatedNode } from '../../hack/cluster/nodes.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, launcherPods, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { startChartNodeAgent } from './chart-node-agent.ts';
import { assertRoutedOntoBridge, createService, kubeProxyRoutes, readyEndpoints, waitServiceRouted, type ServicePort } from './service-rules.ts';

const run = promisify(execFile);
const VM = 'svc-echo';
const ECHO_PORT = 7000;
const ECHO_USER_DATA = `#!/bin/sh\nexec nc -ll -p ${ECHO_PORT} -e /bin/cat\n`;
const BOOT_TIMEOUT_MS = 600_000;
const SYNC_TIMEOUT_MS = 120_000;
const PORT: ServicePort = { name: 'echo', port: 80, targetPort: ECHO_PORT };

/** One line through `host:port` from the host (or from inside network namespace `netns`): the answer, or '' with how it failed. */
async function echo(host: string, port: number, line: string, netns?: string): Promise<{ answer: string; stderr: string }> {
  const sh = ['sh', '-c', `printf '%s\\n' "$1" | timeout 10 busybox nc -w 3 "$2" "$3"`, 'echo', line, host, String(port)];
  const [command = 'sh', ...args] = netns === undefined ? sh : ['ip', 'netns', 'exec', netns, ...sh];
  const { stdout, stderr } = await run(command, args)
    .catch((err: unknown) => ({ stdout: (err as { stdout?: string }).stdout ?? '', stderr: (err as { stderr?: string }).stderr ?? '' }));
  return { answer: stdout.trim(), stderr: stderr.trim() };
}

void describe('a Service in front of a VM reaches the guest (local cluster, kube-proxy, real QEMU)', { timeout: 30 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let node: SimulatedNode | undefined;
  let operator: OperatorProcess | undefined;
  let app: string;
  const clusterScoped: string[][] = [];

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-svc');
    app = `echo-${s.runId}`;
    node = await cluster.createNode('kvt-svc');
    clusterScoped.push(...startChartNodeAgent(cluster, `svc-${s.runId}`, s.namespace, node.name));
    operator = await startSuiteOperator(cluster, s, 'service', ['--pod-network', 'node-agent']);
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await s.cleanup();
    if (node !== undefined) await cluster.deleteNode(node.name);
  });

  void it('ClusterIP:80 selecting the VM\'s label reaches the guest\'s echo port; a Service selecting nothing is rejected', async (t) => {
    const vm = testVm(s, guest, { name: VM });
    vm.metadata.labels = { ...vm.metadata.labels, app };
    vm.spec.template.interfaces = [{ name: 'default', binding: 'masquerade' }];
    vm.spec.template.cloudInit = { userData: ECHO_USER_DATA };
    vm.spec.nodeSelector = { 'kubernetes.io/hostname': node?.name ?? '' };
    vm.spec.tolerations = [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }];
    const clusterIp = createService(cluster, s.namespace, 'echo', { app }, PORT);
    const emptyIp = createService(cluster, s.namespace, 'nothing', { app: `${app}-none` }, PORT);
    apply(cluster, vm);
    const started = Date.now();
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with the guest\'s address in status',
      (v) => v.status?.phase === 'Running' && (v.status.interfaces?.[0]?.ipAddresses ?? []).includes('10.0.2.2'), BOOT_TIMEOUT_MS);
    const [pod] = launcherPods(cluster, s.namespace, VM);
    const podIp = pod?.status?.podIP;
    assert.ok(podIp !== undefined);
    assert.equal(cluster.kubectl(['get', 'pod', pod?.metadata.name ?? '', '-n', s.namespace, '-o', 'jsonpath={.metadata.labels.app}']), app,
      'the launcher pod carries the VM\'s label');

    await waitServiceRouted(cluster, { namespace: s.namespace, name: 'echo', clusterIp, port: PORT }, podIp, SYNC_TIMEOUT_MS);
    const synced = Date.now();
    const answer = await eventually('the guest echo through the ClusterIP', async () => {
      const r = await echo(clusterIp, PORT.port, 'svc-e2e');
      return r.answer === 'svc-e2e' ? r.answer : undefined;
    }, 120_000, 1000);
    assert.equal(answer, 'svc-e2e');
    t.diagnostic(`Service ${clusterIp}:${PORT.port} → ${podIp}:${ECHO_PORT} → guest: echo after ${Date.now() - started} ms from apply, ${Date.now() - synced} ms after kube-proxy's rules (accel=tcg)`);

    // From another node's namespace, whose gateway is the host: the host's kube-proxy serves it
    // too. (Not from the VM's own node: the host bridge does not send the rewritten frame back
    // out of the port it came in on; ADR 0099.)
    const other = nodeIndexOf(clusterLayout(), defaultNodeNames[0] ?? '');
    assert.ok(other !== undefined && other !== node?.index, 'a default node other than the VM\'s');
    const netns = nodeNetNames(other).netns;
    const fromNode = await echo(clusterIp, PORT.port, 'svc-e2e-node', netns);
    assert.equal(fromNode.answer, 'svc-e2e-node', `from ${netns}: ${fromNode.stderr}`);

    // The Service that selects nothing: no endpoint, kube-proxy's reject for its ClusterIP.
    await assertRoutedOntoBridge(emptyIp);
    assert.deepEqual(readyEndpoints(cluster, s.namespace, 'nothing'), []);
    assert.equal(await kubeProxyRoutes(s.namespace, 'nothing', emptyIp, PORT, podIp), false);
    await eventually('kube-proxy\'s reject for the Service without endpoints', async () => {
      const { stdout } = await run('iptables-save', ['-t', 'filter'], { maxBuffer: 64 * 1024 * 1024 });
      return stdout.includes(`-d ${emptyIp}/32`) && stdout.includes(`"${s.namespace}/nothing:${PORT.name} has no endpoints"`) ? true : undefined;
    }, SYNC_TIMEOUT_MS, 500);
    const rejected = await echo(emptyIp, PORT.port, 'svc-e2e');
    assert.equal(rejected.answer, '');
    t.diagnostic(`Service without endpoints ${emptyIp}:${PORT.port}: ${rejected.stderr || 'no answer'}`);
  });
});

// Node failures on throwaway simulated nodes: a crashed, frozen or cut-off node
// turns NotReady through the controller-manager's node lifecycle controller within
// its grace period, and comes back when the fault is lifted.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, throwawayTaintKey } from '../support/cluster.ts';
import type { TestCluster } from '../support/cluster.ts';
import { apply, busyboxPod, createNamespace, deleteNamespace, getPod, waitPodPhase } from './test-pods.ts';

const serverScript = 'while true; do echo pong | nc -l -p 9090; done';

/** Connects from the host to a pod IP over the bridge; resolves the first line or an error name. */
function probe(host: string, port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let data = '';
    const done = (result: string): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done('timeout'));
    socket.on('data', (chunk) => { data += chunk.toString(); });
    socket.on('end', () => done(data.trim()));
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'));
  });
}

async function notReadyWithin(cluster: TestCluster, node: string): Promise<number> {
  const started = Date.now();
  const bound = (cluster.nodeMonitorGracePeriodSeconds + 15) * 1000;
  await eventually(`node ${node} NotReady`, () => (cluster.faults.readyStatus(node) !== 'True' ? true : undefined), bound, 250);
  return Date.now() - started;
}

describe('node faults', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  let ns: string;
  const nodes: string[] = [];
  before(async () => {
    cluster = await ensureCluster();
    ns = await createNamespace(cluster, 'kvt-faults');
  });
  after(async () => {
    const errors: unknown[] = [];
    for (const node of nodes) await cluster.deleteNode(node).catch((err: unknown) => errors.push(err));
    try {
      deleteNamespace(cluster, ns);
    } finally {
      cluster.release();
    }
    assert.deepEqual(errors, [], 'every throwaway node was removed');
  });

  async function serverOn(node: string, name: string): Promise<string> {
    apply(cluster, busyboxPod(ns, {
      name, nodeName: node, script: serverScript, restartPolicy: 'Always',
      extraSpec: { tolerations: [{ key: throwawayTaintKey, operator: 'Exists' }] },
    }));
    const pod = await waitPodPhase(cluster, ns, name, ['Running']);
    const ip = pod.status?.podIP ?? '';
    await eventually(`${name} answering on ${ip}`, async () => ((await probe(ip, 9090)) === 'pong' ? true : undefined), 60_000);
    return ip;
  }

  it('a crashed node goes NotReady within the grace period, its pods die, and it comes back', async (t) => {
    const node = (await cluster.createNode('kvt-crash')).name;
    nodes.push(node);
    const ip = await serverOn(node, 'crash-server');
    await cluster.faults.crash(node);
    assert.notEqual(await probe(ip, 9090), 'pong', 'the pod died with its node');
    const elapsed = await notReadyWithin(cluster, node);
    t.diagnostic(`crashed node NotReady after ${elapsed} ms (grace period ${cluster.nodeMonitorGracePeriodSeconds} s)`);
    assert.ok(elapsed <= (cluster.nodeMonitorGracePeriodSeconds + 15) * 1000, `NotReady after ${elapsed} ms`);
    assert.equal(cluster.faults.readyStatus(node), 'Unknown', 'the node lifecycle controller marks it Unknown');

    await cluster.faults.restart(node);
    await eventually('the server restarted after the node came back', async () => {
      const pod = getPod(cluster, ns, 'crash-server');
      const restarts = pod?.status?.containerStatuses?.[0]?.restartCount ?? 0;
      const podIp = pod?.status?.podIP;
      return podIp !== undefined && restarts >= 1 && (await probe(podIp, 9090)) === 'pong' ? true : undefined;
    }, 120_000);
  });

  it('a frozen node goes NotReady and recovers with its pods when thawed', async () => {
    const node = (await cluster.createNode('kvt-freeze')).name;
    nodes.push(node);
    const ip = await serverOn(node, 'freeze-server');
    cluster.faults.freeze(node);
    try {
      assert.notEqual(await probe(ip, 9090), 'pong', 'a frozen pod never answers');
      await notReadyWithin(cluster, node);
    } finally {
      cluster.faults.thaw(node);
    }
    await eventually(`node ${node} Ready again`, () => (cluster.faults.readyStatus(node) === 'True' ? true : undefined), 90_000);
    await eventually('the thawed pod answers', async () => ((await probe(ip, 9090)) === 'pong' ? true : undefined), 30_000);
    assert.equal(getPod(cluster, ns, 'freeze-server')?.status?.containerStatuses?.[0]?.restartCount, 0, 'thawed, not restarted');
  });

  it('a node cut off the network goes NotReady and recovers when the link returns', async () => {
    const node = (await cluster.createNode('kvt-netcut')).name;
    nodes.push(node);
    const ip = await serverOn(node, 'netcut-server');
    cluster.faults.cutNetwork(node);
    try {
      assert.notEqual(await probe(ip, 9090), 'pong', 'its pods are unreachable');
      await notReadyWithin(cluster, node);
    } finally {
      cluster.faults.restoreNetwork(node);
    }
    await eventually(`node ${node} Ready again`, () => (cluster.faults.readyStatus(node) === 'True' ? true : undefined), 90_000);
    await eventually('its pod reachable again', async () => ((await probe(ip, 9090)) === 'pong' ? true : undefined), 30_000);
  });

  it('refuses to inject faults into the shared default nodes', async () => {
    await assert.rejects(cluster.faults.crash(cluster.defaultNodes[0] ?? ''), RangeError);
    assert.throws(() => cluster.faults.freeze(cluster.defaultNodes[1] ?? ''), RangeError);
  });
});

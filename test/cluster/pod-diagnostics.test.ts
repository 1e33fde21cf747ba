// The pod diagnostics a suite prints when a release never becomes Ready, against pods of
// the real simulated nodes: one serving its declared port, one declaring a port it does
// not serve.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { podDiagnostics } from '../support/pod-diagnostics.ts';
import { apply, busyboxPod, createNamespace, deleteNamespace, waitPodPhase } from './test-pods.ts';

void describe('pod diagnostics', () => {
  let cluster: TestCluster;
  let ns: string;
  before(async () => {
    cluster = await ensureCluster();
    ns = await createNamespace(cluster, 'kvt-diag');
  });
  after(() => {
    try {
      deleteNamespace(cluster, ns);
    } finally {
      cluster.release();
    }
  });

  it("shows each pod's state, log, listening sockets and whether its node reaches its ports", async () => {
    const [node = ''] = cluster.defaultNodes;
    const port = { ports: [{ containerPort: 8080 }] };
    apply(cluster, busyboxPod(ns, { name: 'serving', nodeName: node, script: 'echo serving-started; while true; do echo pong | nc -l -p 8080; done', container: port }));
    apply(cluster, busyboxPod(ns, { name: 'silent', nodeName: node, script: 'echo silent-started; sleep 3600', container: port }));
    await waitPodPhase(cluster, ns, 'serving', ['Running']);
    await waitPodPhase(cluster, ns, 'silent', ['Running']);
    const section = (text: string, name: string): string => {
      const start = text.indexOf(`--- pod ${ns}/${name} on ${node}: Running 10.77.0.`);
      assert.ok(start >= 0, text);
      const next = text.indexOf('--- pod ', start + 1);
      return text.slice(start, next < 0 ? undefined : next);
    };
    // Running means started, not yet listening: wait until the shells wrote their first line and nc listens.
    const text = await eventually('both shells started, nc listening', () => {
      const t = podDiagnostics(cluster, ns);
      return section(t, 'serving').includes('*:8080') && section(t, 'silent').includes('silent-started') ? t : undefined;
    }, 60_000);
    const serving = section(text, 'serving');
    assert.match(serving, /log of main:\nserving-started/);
    assert.match(serving, /"sandbox ready"/, 'the node simulator lines on the pod');
    assert.match(serving, /listening in the pod:\n.*:8080/);
    assert.match(serving, /dial 10\.77\.0\.\d+:8080 from the node: connected/);
    assert.match(serving, /node bridge \(kv-node-\d+\):[\s\S]*\nneighbour: 10\.77\.0\.\d+ dev nbr0 lladdr 0a:58:[\s\S]*\nbridge port of 0a:58:0a:4d:00:[0-9a-f]{2}: 0a:58:0a:4d:00:[0-9a-f]{2} dev vp[0-9a-f]{12} /);
    const silent = section(text, 'silent');
    assert.match(silent, /log of main:\nsilent-started/);
    assert.match(silent, /dial 10\.77\.0\.\d+:8080 from the node: .*(refused|Connection refused)/);
    assert.doesNotMatch(silent, /from the node: connected/);
    assert.match(podDiagnostics(cluster, 'kvt-diag-no-such-namespace'), /^$|pods of kvt-diag-no-such-namespace/);
  });
});

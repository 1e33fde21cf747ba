// The node agent image (operator/src/node-agent/Containerfile) run by podman through
// testcontainers with the host's /sys, /proc and /dev mounted read-only where the chart's
// DaemonSet mounts them: its first step is to describe the host (CPU model and features,
// KVM, PCI devices) and patch its Node's labels. The Node here is one this suite creates
// (unschedulable, tainted, no kubelet), so no pod ever lands on it; the labels the
// container writes must be the ones the same code computes on the host.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GenericContainer, Wait } from 'testcontainers';
import { z } from 'zod';
import { describeHost, HOST_ROOTS } from '../../operator/src/node-agent/node-agent.ts';
import { NODE_AGENT_LABEL } from '../../operator/src/node-agent/node-label-keys.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { builtImage, containerOutput, NEVER_PULL, startPodmanService, type PodmanService } from './podman-service.ts';

const NodeLabels = z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()).default({}) }) });

void describe('node agent image', { timeout: 300_000 }, () => {
  let ref = '';
  let podman: PodmanService | undefined;
  let cluster: TestCluster | undefined;
  const nodeName = `kv-image-agent-${randomBytes(4).toString('hex')}`;

  before(async () => {
    ref = await builtImage('node-agent');
    cluster = await ensureCluster();
    podman = await startPodmanService();
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName, labels: { 'keyvirt.io/image-test': 'true' } },
      spec: { unschedulable: true, taints: [{ key: 'keyvirt.io/image-test', value: 'true', effect: 'NoSchedule' }] },
    };
    cluster.kubectl(['create', '-f', '-'], JSON.stringify(node));
  });
  after(async () => {
    await podman?.stop();
    cluster?.kubectl(['delete', 'node', nodeName, '--ignore-not-found', '--wait=false']);
    cluster?.release();
  });

  void it("describes the host and patches its Node's labels", async (t) => {
    assert.ok(cluster !== undefined);
    const c = cluster;
    const kubeconfigDir = path.dirname(c.kubeconfig);
    const output = containerOutput();
    const container = await new GenericContainer(ref)
      .withPullPolicy(NEVER_PULL)
      .withNetworkMode('host')
      .withSecurityOpt('no-new-privileges')
      .withBindMounts([
        { source: '/sys', target: '/host/sys', mode: 'ro' },
        { source: '/proc', target: '/host/proc', mode: 'ro' },
        { source: '/dev', target: '/host/dev', mode: 'ro' },
        { source: kubeconfigDir, target: kubeconfigDir, mode: 'ro' },
      ])
      .withEnvironment({
        NODE_NAME: nodeName,
        KUBECONFIG: c.kubeconfig,
        KEYVIRT_SYSFS_ROOT: '/host/sys',
        KEYVIRT_PROC_ROOT: '/host/proc',
        KEYVIRT_DEV_ROOT: '/host/dev',
      })
      .withLogConsumer((stream) => output.consume(stream))
      .withWaitStrategy(Wait.forLogMessage('node agent starting'))
      .withStartupTimeout(60_000)
      .start();
    try {
      const started = Date.now();
      await output.waitFor(/node description updated/, 60_000);
      const labels = await eventually(
        'the node agent labels on the Node',
        () => {
          const node = NodeLabels.parse(JSON.parse(c.kubectl(['get', 'node', nodeName, '-o', 'json'])));
          return node.metadata.labels[NODE_AGENT_LABEL] === undefined ? undefined : node.metadata.labels;
        },
        30_000,
      );
      t.diagnostic(`labels written ${Date.now() - started} ms after the agent started`);
      const expected = await describeHost(HOST_ROOTS);
      for (const [key, value] of Object.entries(expected.labels)) assert.equal(labels[key], value, `label ${key}`);
    } finally {
      await container.stop({ timeout: 20_000 });
    }
  });
});

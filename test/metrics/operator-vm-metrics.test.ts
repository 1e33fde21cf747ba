// Per-VM metrics with every part real on the local cluster: the operator (under its
// shipped RBAC, with the metrics key) writes the VM's metrics token into the launcher
// Secret; the launcher pod runs on a simulated node with QEMU (TCG here) booting the
// test guest; the node agent for that node (on the host, as the node agent suites run
// it) lists the node's launcher pods, derives the token and serves /metrics, where the
// VM's vCPU seconds rise, named by the VM's namespace, name and node.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, launcherPods, pvcDisk, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { sampleValue, startMetricsNodeAgent, type MetricsNodeAgent } from './node-agent-process.ts';

const VM = 'metrics-1';

void describe('per-VM metrics from an operator-managed launcher', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let agent: MetricsNodeAgent | undefined;
  let keyFile: string;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-metrics');
    keyFile = path.join(s.dir, 'metrics-key');
    await writeFile(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    await pvcDisk(cluster, s, 'metrics-1-data');
    operator = await startSuiteOperator(cluster, s, 'metrics', ['--metrics-key-file', keyFile]);
  });

  after(async () => {
    await agent?.stop();
    await stopOperator(operator);
    await s.cleanup();
  });

  void it("a running VM's vCPU seconds rise in the node agent's /metrics", async () => {
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'metrics-1-data' }));
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running', (vm) => vm.status?.phase === 'Running');
    const pod = launcherPods(cluster, s.namespace, VM)[0];
    assert.ok(pod?.spec.nodeName !== undefined, 'the launcher pod is on a node');
    const node = pod.spec.nodeName;
    const secret = z
      .object({ data: z.record(z.string(), z.string()) })
      .parse(JSON.parse(cluster.kubectl(['get', 'secret', `launcher-${VM}`, '-n', s.namespace, '-o', 'json'])));
    assert.ok(secret.data['metrics-token'] !== undefined, 'the operator wrote the metrics token into the launcher Secret');
    agent = await startMetricsNodeAgent(cluster, node, keyFile);
    const a = agent;
    const labels = { namespace: s.namespace, name: VM, node };
    const first = await eventually('vCPU seconds of the VM in /metrics', async () => {
      const text = await a.scrape();
      const v = sampleValue(text, 'keyvirt_vmi_vcpu_seconds_total', { ...labels, vcpu: '0' });
      return v === undefined ? undefined : { text, v };
    }, 90_000);
    assert.equal(sampleValue(first.text, 'keyvirt_vmi_launcher_up', labels), 1, a.output());
    assert.ok((sampleValue(first.text, 'keyvirt_vmi_storage_read_traffic_bytes_total', { ...labels, drive: 'data' }) ?? -1) >= 0, 'the data disk has counters');
    assert.ok((sampleValue(first.text, 'keyvirt_vmi_launcher_overhead_bytes', labels) ?? 0) > 0);
    const later = await eventually('vCPU seconds rising', async () => {
      const v = sampleValue(await a.scrape(), 'keyvirt_vmi_vcpu_seconds_total', { ...labels, vcpu: '0' });
      return v !== undefined && v > first.v ? v : undefined;
    }, 60_000);
    console.log(`vCPU 0 seconds of ${s.namespace}/${VM} on ${node} (TCG): ${first.v.toFixed(3)} → ${later.toFixed(3)}; overhead ${Math.round((sampleValue(first.text, 'keyvirt_vmi_launcher_overhead_bytes', labels) ?? 0) / 2 ** 20)} MiB`);
  });
});

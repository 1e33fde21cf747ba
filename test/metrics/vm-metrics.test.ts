// Per-VM metrics end to end (ADR 0069): a real launcher runs the test guest under QEMU
// (TCG here), with the read-only metrics token beside its API token as the operator
// writes it; its launcher pod is a Pod object on a Node of the real API server (no
// kubelet: the test binds it and reports it Running at the launcher's address); the
// node agent runs on the host for that node, lists the node's launcher pods, derives
// the VM's metrics token from the cluster's metrics key and serves /metrics.
// Checked: the VM's vCPU seconds rise in the node agent's /metrics, its disk and memory
// series are there labelled by the pod's namespace/name/node, the launcher is up; the
// metrics token opens GET /v1/metrics only (401 on status and actions) and a token
// derived from another key opens nothing.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deriveMetricsToken, METRICS_TOKEN_FILE_NAME, VmMetricsSchema } from '@keyvirt/launcher/api';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { createSharedVm, removeSharedVm, startLauncher, waitForStatus, type LauncherProcess, type SharedVm } from '../support/launcher-process.ts';
import { sampleValue, startMetricsNodeAgent, type MetricsNodeAgent } from './node-agent-process.ts';

const BOOT_TIMEOUT_MS = 180_000;

void describe('per-VM metrics through the node agent', { timeout: 10 * 60_000 }, () => {
  let cluster: TestCluster;
  let dir: string;
  let vm: SharedVm;
  let launcher: LauncherProcess;
  let agent: MetricsNodeAgent | undefined;
  const suffix = randomBytes(3).toString('hex');
  const nodeName = `kv-metrics-${suffix}`;
  const namespace = `kv-metrics-${suffix}`;
  const vmName = 'metrics-vm';
  const key = randomBytes(32).toString('hex');

  before(async () => {
    cluster = await ensureCluster();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-metrics-'));
    await writeFile(path.join(dir, 'metrics-key'), `${key}\n`, { mode: 0o600 });
    vm = await createSharedVm({ uid: randomUUID(), diskFormat: 'raw' });
    launcher = await startLauncher({
      vm,
      name: 'metrics',
      // The operator writes the metrics token into the launcher's Secret, mounted beside the API token.
      configure: (c) => {
        writeFileSync(path.join(path.dirname(c.tokenFile), METRICS_TOKEN_FILE_NAME), deriveMetricsToken(Buffer.from(key), vm.uid), { mode: 0o600 });
        return c;
      },
    });
    await waitForStatus(launcher, (s) => s.phase === 'Running' && s.guestAgent.connected, BOOT_TIMEOUT_MS, 'the guest running with its agent');
    const port = Number(new URL(launcher.baseUrl).port);
    cluster.kubectl(['create', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName } },
      spec: { taints: [{ key: 'keyvirt.io/test-node', value: 'no-kubelet', effect: 'NoSchedule' }] },
    }));
    cluster.kubectl(['create', 'namespace', namespace]);
    cluster.kubectl(['create', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `launcher-${vmName}`,
        namespace,
        labels: { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'keyvirt.io/vm': vmName, 'keyvirt.io/vm-uid': vm.uid },
      },
      spec: {
        nodeName,
        tolerations: [{ operator: 'Exists' }],
        containers: [{ name: 'launcher', image: 'keyvirt/launcher:test', ports: [{ name: 'launcher-api', containerPort: port, protocol: 'TCP' }] }],
      },
    }));
    // No kubelet runs this node: report the pod Running at the launcher's address, as a kubelet would.
    cluster.kubectl(['patch', 'pod', `launcher-${vmName}`, '-n', namespace, '--subresource=status', '--type=merge', '-p',
      JSON.stringify({ status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } })]);
  });

  after(async () => {
    await agent?.stop();
    cluster.kubectl(['delete', 'namespace', namespace, '--ignore-not-found', '--wait=false']);
    cluster.kubectl(['delete', 'node', nodeName, '--ignore-not-found', '--wait=false']);
    await launcher.dispose();
    await removeSharedVm(vm);
    await rm(dir, { recursive: true, force: true });
  });

  void it('the metrics token opens GET /v1/metrics only; another key opens nothing', async () => {
    const token = deriveMetricsToken(Buffer.from(key), vm.uid);
    const get = (p: string, t: string, method = 'GET'): Promise<Response> => fetch(`${launcher.baseUrl}${p}`, { method, headers: { authorization: `Bearer ${t}` } });
    const ok = await get('/v1/metrics', token);
    assert.equal(ok.status, 200);
    const m = VmMetricsSchema.parse(await ok.json());
    assert.equal(m.vm.uid, vm.uid);
    assert.ok(m.vcpus.length >= 1, 'vCPU threads found');
    assert.ok((m.memory.overheadBytes ?? 0) > 0, 'launcher overhead measured');
    console.log(`launcher metrics (TCG): qemu RSS ${Math.round((m.memory.qemuResidentBytes ?? 0) / 2 ** 20)} MiB, launcher RSS ${Math.round(m.memory.launcherResidentBytes / 2 ** 20)} MiB, overhead ${Math.round((m.memory.overheadBytes ?? 0) / 2 ** 20)} MiB, guest RAM ${m.memory.guestBytes / 2 ** 20} MiB`);
    for (const [p, method] of [['/v1/status', 'GET'], ['/v1/info', 'GET'], ['/v1/actions/pause', 'POST'], ['/v1/metrics', 'POST']] as const) {
      const res = await get(p, token, method);
      assert.equal(res.status, 401, `${method} ${p} with the metrics token`);
      await res.body?.cancel();
    }
    const foreign = await get('/v1/metrics', deriveMetricsToken(randomBytes(32), vm.uid));
    assert.equal(foreign.status, 401);
    await foreign.body?.cancel();
    const status = await launcher.client.status();
    assert.equal(status.phase, 'Running', 'the VM was not touched');
  });

  void it("a running VM's vCPU seconds rise in the node agent's /metrics", async () => {
    agent = await startMetricsNodeAgent(cluster, nodeName, path.join(dir, 'metrics-key'));
    const node = agent;
    const scrape = (): Promise<string> => node.scrape();
    const vmLabels = { namespace, name: vmName, node: nodeName };
    const first = await eventually('vCPU seconds of the VM in /metrics', async () => {
      const text = await scrape();
      const v = sampleValue(text, 'keyvirt_vmi_vcpu_seconds_total', { ...vmLabels, vcpu: '0' });
      return v === undefined ? undefined : { text, v };
    }, 60_000);
    assert.equal(sampleValue(first.text, 'keyvirt_vmi_launcher_up', vmLabels), 1);
    assert.ok((sampleValue(first.text, 'keyvirt_vmi_storage_read_traffic_bytes_total', { ...vmLabels, drive: 'root' }) ?? -1) >= 0, 'the root disk has counters');
    assert.ok((sampleValue(first.text, 'keyvirt_vmi_memory_resident_bytes', vmLabels) ?? 0) > 0);
    assert.ok((sampleValue(first.text, 'keyvirt_vmi_launcher_overhead_bytes', vmLabels) ?? 0) > 0);
    assert.equal(sampleValue(first.text, 'keyvirt_vmi_phase_count', { node: nodeName, phase: 'Running' }), 1);
    assert.equal(sampleValue(first.text, 'keyvirt_node_agent_uncaught_errors_total', { node: nodeName }), 0, 'the agent survived no error nobody caught');
    const later = await eventually('vCPU seconds rising', async () => {
      const v = sampleValue(await scrape(), 'keyvirt_vmi_vcpu_seconds_total', { ...vmLabels, vcpu: '0' });
      return v !== undefined && v > first.v ? v : undefined;
    }, 30_000);
    console.log(`vCPU 0 seconds in the node agent's /metrics (TCG): ${first.v.toFixed(3)} → ${later.toFixed(3)}`);
  });
});

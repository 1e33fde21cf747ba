// The node agent against the real API server: it labels a Node with KVM, the
// accelerator, CPU vendor/models/features, and advertises the fixture host's
// assignable PCI devices as extended resources in the Node's status; stale labels
// and resources go when the host changes. Its writes carry its field manager; its
// pod-network reads go through the same client.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { loadApiAccess } from '../../operator/src/runtime/api-access.ts';
import { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { NODE_AGENT_FIELD_MANAGER } from '../../operator/src/node-agent/kube-node-api.ts';
import { kubePodNetworkApi } from '../../operator/src/node-agent/network/pod-network-controller.ts';
import { LAUNCHER_POD_SELECTOR } from '../../operator/src/vm/names.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const fixtures = path.join(repoRoot, 'test/fixtures');

const NodeJson = z.object({
  metadata: z.object({ labels: z.record(z.string(), z.string()).default({}), annotations: z.record(z.string(), z.string()).default({}) }),
  status: z.object({ capacity: z.record(z.string(), z.string()).default({}), allocatable: z.record(z.string(), z.string()).default({}) }).default({ capacity: {}, allocatable: {} }),
});
type NodeJson = z.infer<typeof NodeJson>;

void describe('node agent on the real API server', { timeout: 5 * 60_000 }, () => {
  let cluster: TestCluster;
  let dir: string;
  let nodeName: string;
  let agent: ChildProcess | undefined;
  let agentOutput = '';

  const readNode = (): NodeJson => NodeJson.parse(JSON.parse(cluster.kubectl(['get', 'node', nodeName, '-o', 'json'])));

  function startAgent(procRoot: string, devRoot: string): ChildProcess {
    const child = spawn(process.execPath, [path.join(repoRoot, 'operator/src/node-agent/main.ts')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        KUBECONFIG: cluster.kubeconfig,
        NODE_NAME: nodeName,
        KEYVIRT_SYSFS_ROOT: path.join(fixtures, 'sysfs/passthrough-host'),
        KEYVIRT_PROC_ROOT: procRoot,
        KEYVIRT_DEV_ROOT: devRoot,
        KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: '1',
        KEYVIRT_LOG_LEVEL: 'warn',
      },
    });
    agentOutput = '';
    child.stdout?.on('data', (chunk: Buffer) => (agentOutput += chunk.toString('utf8')));
    return child;
  }

  /** SIGTERM, up to 10 s, then SIGKILL: how it ended. */
  async function stopAgent(): Promise<string> {
    const child = agent;
    agent = undefined;
    if (child === undefined) return 'not running';
    if (child.exitCode !== null || child.signalCode !== null) return `already ended: ${String(child.exitCode ?? child.signalCode)}`;
    const exited = new Promise<string>((resolve) => child.once('close', (code, signal) => resolve(String(code ?? signal))));
    child.kill('SIGTERM');
    const how = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 10 s'), 10_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    return how;
  }

  before(async () => {
    cluster = await ensureCluster();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-node-agent-'));
    nodeName = `kv-node-agent-${randomBytes(4).toString('hex')}`;
    // A Node object with no kubelet behind it: the agent only needs the API object.
    cluster.kubectl(['create', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName, 'cpu-feature.node.keyvirt.io/stale-flag': 'true' } },
      spec: { taints: [{ key: 'keyvirt.io/test-node', value: 'no-kubelet', effect: 'NoSchedule' }] },
    }));
  });

  after(async () => {
    await stopAgent();
    cluster.kubectl(['delete', 'node', nodeName, '--ignore-not-found', '--wait=false']);
    await rm(dir, { recursive: true, force: true });
  });

  void it('labels the node and advertises assignable PCI devices as extended resources', async () => {
    const proc = path.join(dir, 'proc-amd');
    const dev = path.join(dir, 'dev-kvm');
    await import('node:fs/promises').then(async (fs) => {
      await fs.mkdir(proc);
      await fs.mkdir(dev);
    });
    await copyFile(path.join(fixtures, 'cpuinfo/amd-epyc-milan-host.txt'), path.join(proc, 'cpuinfo'));
    await writeFile(path.join(dev, 'kvm'), '');
    agent = startAgent(proc, dev);
    const node = await eventually('the node described', () => {
      const n = readNode();
      return n.status.allocatable['keyvirt.io/pci-10de-1eb8'] !== undefined && n.metadata.labels['keyvirt.io/kvm'] !== undefined ? n : undefined;
    }, 60_000);
    const labels = node.metadata.labels;
    assert.equal(labels['keyvirt.io/kvm'], 'true');
    assert.equal(labels['keyvirt.io/accelerator'], 'kvm');
    assert.equal(labels['cpu-vendor.node.keyvirt.io/AMD'], 'true');
    assert.equal(labels['cpu-model.node.keyvirt.io/EPYC-Milan'], 'true');
    assert.equal(labels['host-model-cpu.node.keyvirt.io/EPYC-Milan'], 'true');
    assert.equal(labels['cpu-feature.node.keyvirt.io/sse4.2'], 'true');
    assert.equal(labels['cpu-feature.node.keyvirt.io/stale-flag'], undefined, 'a stale feature label was removed');
    for (const field of ['capacity', 'allocatable'] as const) {
      assert.equal(node.status[field]['keyvirt.io/pci-10de-1eb8'], '2', field);
      assert.equal(node.status[field]['keyvirt.io/pci-10de-10f8'], '1', field);
      assert.equal(node.status[field]['keyvirt.io/pci-144d-a808'], '1', field);
      assert.equal(node.status[field]['keyvirt.io/pci-8086-1572'], undefined, `${field}: a device bound to a host driver is not offered`);
    }
    const devices = z.array(z.object({ address: z.string(), assignable: z.boolean() })).parse(JSON.parse(node.metadata.annotations['keyvirt.io/pci-devices'] ?? '[]'));
    assert.equal(devices.filter((d) => d.assignable).length, 4);
  });

  void it('follows a host change: no vmx/svm means TCG, with the reason', async () => {
    assert.equal(await stopAgent(), '0', `a SIGTERM stops the agent cleanly; its warnings:\n${agentOutput}`);
    const proc = path.join(dir, 'proc-intel');
    await import('node:fs/promises').then((fs) => fs.mkdir(proc));
    await copyFile(path.join(fixtures, 'cpuinfo/intel-xeon-kvm-guest.txt'), path.join(proc, 'cpuinfo'));
    agent = startAgent(proc, path.join(dir, 'no-dev'));
    const node = await eventually('the node re-described', () => {
      const n = readNode();
      return n.metadata.labels['keyvirt.io/accelerator'] === 'tcg' ? n : undefined;
    }, 60_000);
    assert.equal(node.metadata.labels['keyvirt.io/kvm'], 'false');
    assert.equal(node.metadata.labels['cpu-vendor.node.keyvirt.io/AMD'], undefined);
    assert.equal(node.metadata.labels['cpu-vendor.node.keyvirt.io/Intel'], 'true');
    assert.equal(node.metadata.labels['cpu-model.node.keyvirt.io/EPYC'], undefined);
    assert.equal(node.metadata.labels['cpu-model.node.keyvirt.io/Icelake-Server-noTSX'], 'true');
    assert.match(node.metadata.annotations['keyvirt.io/accelerator-reason'] ?? '', /no hardware virtualization/);
  });

  void it("writes the node and its status as its own field manager, and reads pods and VMs through the operator's client", async () => {
    const managed = z.object({ metadata: z.object({ managedFields: z.array(z.object({ manager: z.string(), subresource: z.string().optional() })) }) });
    const fields = managed.parse(JSON.parse(cluster.kubectl(['get', 'node', nodeName, '-o', 'json', '--show-managed-fields']))).metadata.managedFields;
    const mine = fields.filter((f) => f.manager === NODE_AGENT_FIELD_MANAGER);
    assert.ok(mine.some((f) => f.subresource === undefined), 'labels and annotations');
    assert.ok(mine.some((f) => f.subresource === 'status'), 'extended resources');
    const api = kubePodNetworkApi(new KubeClient(await loadApiAccess(cluster.kubeconfig, {}), NODE_AGENT_FIELD_MANAGER));
    assert.deepEqual(z.object({ items: z.array(z.unknown()) }).parse(await api.listPods(`spec.nodeName=${nodeName}`, LAUNCHER_POD_SELECTOR)).items, []);
    assert.equal(await api.readVm('default', `kv-absent-${randomBytes(4).toString('hex')}`), undefined, 'an absent VM');
  });
});

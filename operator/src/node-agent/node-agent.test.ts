import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { syncNode, type HostRoots, type NodeApi } from './node-agent.ts';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** An in-memory node that applies JSON merge patches (null deletes) like the API server. */
function memoryNode(initial: { labels: Record<string, string>; capacity: Record<string, string> }): {
  api: NodeApi;
  node: { metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string> }; status: { capacity: Record<string, string>; allocatable: Record<string, string> } };
  writes: string[];
} {
  const node = {
    metadata: { name: 'n1', labels: { ...initial.labels }, annotations: {} as Record<string, string> },
    status: { capacity: { ...initial.capacity }, allocatable: { ...initial.capacity } },
  };
  const writes: string[] = [];
  const apply = (target: Record<string, string>, patch: Record<string, string | null> | undefined): void => {
    for (const [k, v] of Object.entries(patch ?? {})) {
      if (v === null) Reflect.deleteProperty(target, k);
      else target[k] = v;
    }
  };
  type MetaPatch = { metadata: { labels?: Record<string, string | null>; annotations?: Record<string, string | null> } };
  type StatusPatch = { status: { capacity: Record<string, string | null>; allocatable: Record<string, string | null> } };
  const api: NodeApi = {
    readNode: () => Promise.resolve(structuredClone(node)),
    patchNode: (_name, patch) => {
      writes.push('metadata');
      const p = patch as MetaPatch;
      apply(node.metadata.labels, p.metadata.labels);
      apply(node.metadata.annotations, p.metadata.annotations);
      return Promise.resolve();
    },
    patchNodeStatus: (_name, patch) => {
      writes.push('status');
      const p = patch as StatusPatch;
      apply(node.status.capacity, p.status.capacity);
      apply(node.status.allocatable, p.status.allocatable);
      return Promise.resolve();
    },
  };
  return { api, node, writes };
}

async function hostRoots(t: { after: (fn: () => Promise<void>) => void }, cpuinfo: string, kvm: boolean): Promise<HostRoots> {
  const dir = await mkdtemp(join(tmpdir(), 'keyvirt-node-agent-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await copyFile(join(FIXTURES, 'cpuinfo', cpuinfo), join(dir, 'cpuinfo'));
  if (kvm) await writeFile(join(dir, 'kvm'), '');
  return { sysfs: join(FIXTURES, 'sysfs', 'passthrough-host'), procfs: dir, dev: dir };
}

void test('labels a KVM host, advertises its devices and removes what no longer applies', async (t) => {
  const roots = await hostRoots(t, 'amd-epyc-milan-host.txt', true);
  const { api, node, writes } = memoryNode({
    labels: { 'kubernetes.io/hostname': 'n1', 'cpu-feature.node.keyvirt.io/avx512f': 'true', team: 'a' },
    capacity: { cpu: '4', memory: '8Gi', 'keyvirt.io/pci-dead-beef': '1' },
  });
  const first = await syncNode(api, 'n1', roots);
  assert.deepEqual(first, { labelsChanged: true, resourcesChanged: true });
  const labels = node.metadata.labels;
  assert.equal(labels['keyvirt.io/kvm'], 'true');
  assert.equal(labels['keyvirt.io/accelerator'], 'kvm');
  assert.equal(labels['cpu-model.node.keyvirt.io/EPYC-Milan'], 'true');
  assert.equal(labels['host-model-cpu.node.keyvirt.io/EPYC-Milan'], 'true');
  assert.equal(labels['cpu-vendor.node.keyvirt.io/AMD'], 'true');
  assert.equal(labels['cpu-feature.node.keyvirt.io/sse4.2'], 'true');
  assert.equal(labels['cpu-feature.node.keyvirt.io/avx512f'], undefined, 'a stale feature label is removed');
  assert.equal(labels.team, 'a', 'labels the agent does not own stay');
  assert.deepEqual(node.status.capacity, {
    cpu: '4',
    memory: '8Gi',
    'keyvirt.io/pci-10de-1eb8': '2',
    'keyvirt.io/pci-10de-10f8': '1',
    'keyvirt.io/pci-144d-a808': '1',
  });
  assert.deepEqual(node.status.allocatable, node.status.capacity);
  const devices = JSON.parse(node.metadata.annotations['keyvirt.io/pci-devices'] ?? '[]') as { address: string }[];
  assert.equal(devices.length, 8);

  writes.length = 0;
  assert.deepEqual(await syncNode(api, 'n1', roots), { labelsChanged: false, resourcesChanged: false });
  assert.deepEqual(writes, [], 'a second pass over an unchanged host writes nothing');
});

void test('a host without vmx/svm gets kvm=false and accelerator tcg with the reason', async (t) => {
  const roots = await hostRoots(t, 'intel-xeon-kvm-guest.txt', true);
  const { api, node } = memoryNode({ labels: {}, capacity: {} });
  await syncNode(api, 'n1', roots);
  assert.equal(node.metadata.labels['keyvirt.io/kvm'], 'false');
  assert.equal(node.metadata.labels['keyvirt.io/accelerator'], 'tcg');
  assert.match(node.metadata.annotations['keyvirt.io/accelerator-reason'] ?? '', /no hardware virtualization/);
});

void test('a CPU with vmx but no /dev/kvm runs TCG and says why', async (t) => {
  const roots = await hostRoots(t, 'amd-epyc-milan-host.txt', false);
  const { api, node } = memoryNode({ labels: {}, capacity: {} });
  await syncNode(api, 'n1', roots);
  assert.equal(node.metadata.labels['keyvirt.io/kvm'], 'false');
  assert.match(node.metadata.annotations['keyvirt.io/accelerator-reason'] ?? '', /\/dev\/kvm cannot be opened/);
});

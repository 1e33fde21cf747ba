// The local control plane: pinned version, default nodes Ready, the limited user.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { KubectlError } from '../../hack/cluster/kubectl.ts';
import { ensureCluster } from '../support/cluster.ts';
import type { TestCluster } from '../support/cluster.ts';

const versionSchema = z.object({ gitVersion: z.string(), major: z.string(), minor: z.string(), gitTreeState: z.string() });
const nodeListSchema = z.object({
  items: z.array(z.object({
    metadata: z.object({ name: z.string(), labels: z.record(z.string(), z.string()) }),
    spec: z.object({ podCIDR: z.string().optional() }),
    status: z.object({
      conditions: z.array(z.object({ type: z.string(), status: z.string() })),
      addresses: z.array(z.object({ type: z.string(), address: z.string() })),
      capacity: z.record(z.string(), z.string()),
    }),
  })),
});

function pinnedVersion(): string {
  const pins = fs.readFileSync(path.join(import.meta.dirname, '../../hack/k8s/pins.env'), 'utf8');
  const version = /^KUBERNETES_VERSION=(\S+)/m.exec(pins)?.[1];
  assert.ok(version !== undefined, 'pins.env names a Kubernetes version');
  return version;
}

function forbidden(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof KubectlError && /forbidden/i.test(err.stderr));
}

describe('local control plane', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await ensureCluster();
  });
  after(() => cluster.release());

  it('serves the pinned Kubernetes version', () => {
    const version = versionSchema.parse(JSON.parse(cluster.kubectl(['get', '--raw', '/version'])));
    const pinned = pinnedVersion();
    assert.equal(version.gitVersion, pinned);
    const [major, minor] = pinned.slice(1).split('.');
    assert.equal(version.major, major);
    assert.equal(version.minor, minor);
    assert.equal(version.gitTreeState, 'clean');
    const client = z.object({ clientVersion: versionSchema }).parse(JSON.parse(cluster.kubectl(['version', '--client', '-o', 'json'])));
    assert.equal(client.clientVersion.gitVersion, pinned, 'the pinned kubectl reports the same version');
  });

  it('has both default simulated nodes Ready, advertising emulation and their pod slice', () => {
    const nodes = nodeListSchema.parse(JSON.parse(cluster.kubectl(['get', 'nodes', '-o', 'json'])));
    for (const name of cluster.defaultNodes) {
      const node = nodes.items.find((n) => n.metadata.name === name);
      assert.ok(node !== undefined, `node ${name} is registered`);
      assert.equal(node.status.conditions.find((c) => c.type === 'Ready')?.status, 'True', `${name} is Ready`);
      assert.equal(node.metadata.labels['keyvirt.io/simulated'], 'true');
      const hasKvm = /\b(vmx|svm)\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8')) && fs.existsSync('/dev/kvm');
      assert.equal(node.metadata.labels['keyvirt.io/kvm'], hasKvm ? 'true' : 'false');
      assert.equal(node.metadata.labels['keyvirt.io/emulation'], hasKvm ? 'false' : 'true');
      const internalIp = node.status.addresses.find((a) => a.type === 'InternalIP')?.address;
      assert.match(internalIp ?? '', /^10\.77\.0\.\d+$/);
      assert.match(node.spec.podCIDR ?? '', /^10\.77\.0\.\d+\/28$/);
      assert.ok(Number(node.status.capacity.pods) > 0);
    }
  });

  it('publishes the API server at its real bridge address (no ClusterIP to dial)', () => {
    const endpoints = z.object({ subsets: z.array(z.object({ addresses: z.array(z.object({ ip: z.string() })) })) })
      .parse(JSON.parse(cluster.kubectl(['get', 'endpoints', 'kubernetes', '-n', 'default', '-o', 'json'])));
    assert.deepEqual(endpoints.subsets.flatMap((s) => s.addresses.map((a) => a.ip)), [cluster.apiServer.host]);
  });

  it('lets the limited user read but denies what RBAC denies it', () => {
    const viewer = cluster.viewerKubeconfig;
    assert.equal(cluster.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], undefined, viewer), 'keyvirt-viewer');
    cluster.kubectl(['get', 'pods', '-n', 'default'], undefined, viewer);
    cluster.kubectl(['get', 'configmaps', '-n', 'kube-system'], undefined, viewer);
    forbidden(() => cluster.kubectl(['get', 'secrets', '-n', 'kube-system'], undefined, viewer));
    forbidden(() => cluster.kubectl(['create', 'configmap', 'viewer-must-not-write', '-n', 'default'], undefined, viewer));
    forbidden(() => cluster.kubectl(['delete', 'node', cluster.defaultNodes[0] ?? ''], undefined, viewer));
    forbidden(() => cluster.kubectl(['get', 'nodes'], undefined, viewer));
    forbidden(() => cluster.kubectl(['create', 'clusterrolebinding', 'escalate', '--clusterrole=cluster-admin', '--user=keyvirt-viewer'], undefined, viewer));
  });
});

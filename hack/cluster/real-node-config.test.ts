import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { z } from 'zod';
import {
  cniConfigText, containerdConfigText, kubeletArgs, kubeletConfigText, mountNamespaceScript, podRoutesFrom, privateHostPaths,
  realNodePlan, realNodeTaint,
} from './real-node-config.ts';

const base = '/state/real-nodes';

describe('real node plan', () => {
  const cases: Array<{ name: string; index: number; nodeIp: string; podCidr: string; netns: string }> = [
    { name: 'real-1', index: 3, nodeIp: '10.77.0.49', podCidr: '10.79.3.0/24', netns: 'kv-node-3' },
    { name: 'real-2', index: 4, nodeIp: '10.77.0.65', podCidr: '10.79.4.0/24', netns: 'kv-node-4' },
    { name: 'r', index: 15, nodeIp: '10.77.0.241', podCidr: '10.79.15.0/24', netns: 'kv-node-15' },
  ];
  for (const c of cases) {
    it(`${c.name} in slot ${c.index}`, () => {
      const plan = realNodePlan(base, c.name, c.index);
      assert.equal(plan.nodeIp, c.nodeIp);
      assert.equal(plan.podCidr, c.podCidr);
      assert.equal(plan.netns, c.netns);
      assert.equal(plan.cgroupRoot, `/keyvirt-real-nodes/${c.name}`);
      for (const p of Object.values(plan.privateDirs)) assert.ok(p.startsWith(`${base}/${c.name}/host/`), p);
      assert.equal(new Set(Object.values(plan.privateDirs)).size, privateHostPaths.length);
    });
  }

  for (const [name, index] of [['Real-1', 1], ['', 1], ['a_b', 1], ['x'.repeat(33), 1], ['ok', 0], ['ok', 16]] as const) {
    it(`refuses ${JSON.stringify(name)} in slot ${index}`, () => {
      assert.throws(() => realNodePlan(base, name, index), RangeError);
    });
  }
});

describe('real node files', () => {
  const plan = realNodePlan(base, 'real-1', 3);
  const other = realNodePlan(base, 'real-2', 4);

  it('containerd: own root, state and socket; restricted OOM score; the given sandbox image; own CNI conf_dir', () => {
    const text = containerdConfigText(plan, 'localhost/keyvirt/pause:abc');
    for (const line of [
      `root = "${base}/real-1/containerd/root"`, `state = "${base}/real-1/containerd/state"`,
      `address = "${base}/real-1/containerd/containerd.sock"`, 'restrict_oom_score_adj = true',
      'sandbox_image = "localhost/keyvirt/pause:abc"', 'bin_dir = "/usr/lib/cni"', `conf_dir = "${base}/real-1/cni"`,
      'SystemdCgroup = false', 'stream_server_address = "127.0.0.1"',
    ]) assert.ok(text.includes(line), line);
  });

  it('CNI: a bridge with host-local addresses from the node pod CIDR', () => {
    const conf = z.object({ plugins: z.array(z.object({ type: z.string(), ipam: z.object({ type: z.string(), ranges: z.array(z.array(z.object({ subnet: z.string(), gateway: z.string() }))) }) })) })
      .parse(JSON.parse(cniConfigText(plan)));
    assert.equal(conf.plugins[0]?.type, 'bridge');
    assert.equal(conf.plugins[0]?.ipam.type, 'host-local');
    assert.deepEqual(conf.plugins[0]?.ipam.ranges, [[{ subnet: '10.79.3.0/24', gateway: '10.79.3.1' }]]);
  });

  it('kubelet: cgroupfs under its own root, cgroup v1 and swap tolerated, authenticated API on the node address, tainted', () => {
    const config = z.record(z.string(), z.unknown()).parse(parse(kubeletConfigText(plan, '/pki/ca.crt')));
    assert.equal(config.cgroupDriver, 'cgroupfs');
    assert.equal(config.cgroupRoot, '/keyvirt-real-nodes/real-1');
    assert.equal(config.failCgroupV1, false);
    assert.equal(config.failSwapOn, false);
    assert.equal(config.address, '10.77.0.49');
    assert.equal(config.readOnlyPort, 0);
    assert.deepEqual(config.authentication, {
      anonymous: { enabled: false }, webhook: { enabled: true, cacheTTL: '30s' }, x509: { clientCAFile: '/pki/ca.crt' },
    });
    assert.deepEqual(config.registerWithTaints, [realNodeTaint]);
    assert.equal(config.containerRuntimeEndpoint, `unix://${base}/real-1/containerd/containerd.sock`);
    const args = kubeletArgs(plan);
    assert.ok(args.includes(`--root-dir=${base}/real-1/kubelet`));
    assert.ok(args.includes('--node-ip=10.77.0.49'));
    assert.ok(args.includes('--hostname-override=real-1'));
  });

  it('mount namespace: every hard-coded path bound to the node, each tunable read-only, then the command', () => {
    const script = mountNamespaceScript(plan, ['vm/overcommit_memory']);
    const lines = script.split('\n');
    assert.equal(lines[0], 'set -eu');
    assert.equal(lines.at(-1), 'exec "$@"');
    for (const target of privateHostPaths) assert.ok(lines.includes(`mount --bind '${plan.privateDirs[target]}' '${target}'`), target);
    assert.ok(lines.includes(`mount --bind '${base}/real-1/sysctl/vm.overcommit_memory' '/proc/sys/vm/overcommit_memory'`));
    assert.ok(lines.includes("mount -o remount,bind,ro '/proc/sys/vm/overcommit_memory'"));
  });

  it('routes: from each node to every other node pods, via that node', () => {
    assert.deepEqual(podRoutesFrom(plan, [plan, other]), [{ dst: '10.79.4.0/24', via: '10.77.0.65' }]);
    assert.deepEqual(podRoutesFrom(other, [plan, other]), [{ dst: '10.79.3.0/24', via: '10.77.0.49' }]);
    assert.deepEqual(podRoutesFrom(plan, [plan]), []);
  });
});

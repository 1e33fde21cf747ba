import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cgroupNamesPod, findPodNetns, PodNetnsError } from './pod-netns.ts';
import { isLauncherPort, planPodNetwork, PodNetworkPlanError } from './pod-network-plan.ts';
import type { PodNetworkPlanInput } from './pod-network-plan.ts';

const pod = { address: '10.244.1.7', prefixLength: 24, mtu: 1450, gateway: '10.244.1.1' };
const base: PodNetworkPlanInput = { binding: 'masquerade', pod, launcherUid: 0 };

const dnat = (input: PodNetworkPlanInput): string[] => planPodNetwork(input).iptables.split('\n').filter((l) => l.startsWith('-A KEYVIRT-PREROUTING'));

void describe('pod network plan', () => {
  void it('masquerade with no ports: every port but the launcher\'s goes to the guest', () => {
    assert.deepEqual(dnat(base), [
      '-A KEYVIRT-PREROUTING -i eth0 -p tcp --dport 8443 -j RETURN',
      '-A KEYVIRT-PREROUTING -i eth0 -p tcp --dport 49152:49215 -j RETURN',
      '-A KEYVIRT-PREROUTING -i eth0 -p udp --dport 49152:49215 -j RETURN',
      '-A KEYVIRT-PREROUTING -i eth0 -j DNAT --to-destination 10.0.2.2',
    ]);
  });

  void it('masquerade with ports: only those, by protocol', () => {
    assert.deepEqual(dnat({ ...base, ports: [{ port: 22, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }] }), [
      '-A KEYVIRT-PREROUTING -i eth0 -p tcp --dport 22 -j DNAT --to-destination 10.0.2.2:22',
      '-A KEYVIRT-PREROUTING -i eth0 -p udp --dport 53 -j DNAT --to-destination 10.0.2.2:53',
    ]);
    // An empty list forwards nothing (absent means all).
    assert.deepEqual(dnat({ ...base, ports: [] }), []);
  });

  void it('masquerade: lease, bridge address, tap owner, sysctls, outbound NAT', () => {
    const plan = planPodNetwork({ ...base, launcherUid: 107 });
    assert.deepEqual(plan.lease, { v: 1, binding: 'masquerade', address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1', server: '10.0.2.1', mtu: 1450 });
    const flat = plan.commands.map((c) => c.join(' '));
    assert.ok(flat.includes('ip addr add 10.0.2.1/24 dev kvbr0'));
    assert.ok(flat.includes('ip tuntap add dev kvtap0 mode tap user 107'));
    assert.ok(flat.includes('sysctl -q -w net.ipv4.ip_unprivileged_port_start=67'));
    assert.ok(flat.includes('sysctl -q -w net.ipv4.ip_local_port_range=49152 49215'));
    assert.ok(plan.iptables.includes('-A KEYVIRT-POSTROUTING -s 10.0.2.2/32 -o eth0 -j MASQUERADE'));
    assert.ok(plan.iptables.includes('-A KEYVIRT-INPUT -i kvbr0 -j DROP'));
    assert.ok(plan.iptables.includes('-A KEYVIRT-INPUT -i eth0 -p udp --dport 67 -j DROP'));
    assert.equal(plan.announce.slice(0, 6).join(' '), 'ip link set dev kvtap0 alias');
    assert.deepEqual(JSON.parse(plan.announce[6] ?? ''), plan.lease);
  });

  void it('bridge: the pod IP goes to the guest, the launcher keeps its ports on its private address', () => {
    const plan = planPodNetwork({ ...base, binding: 'bridge' });
    assert.deepEqual(plan.lease, { v: 1, binding: 'bridge', address: '10.244.1.7', prefixLength: 24, gateway: '10.244.1.1', server: '169.254.75.10', mtu: 1450 });
    const flat = plan.commands.map((c) => c.join(' '));
    assert.ok(flat.includes('ip addr flush dev eth0'));
    assert.ok(flat.includes('ip route replace 10.244.1.7/32 dev kvbr0 src 169.254.75.10'));
    assert.ok(flat.includes('ip route replace 10.244.1.0/24 dev eth0 src 169.254.75.10'));
    assert.ok(flat.includes('ip route replace default via 10.244.1.1 dev eth0 onlink'));
    assert.ok(flat.indexOf('ip addr flush dev eth0') > flat.indexOf('ip link set dev kvbr0 up'));
    assert.deepEqual(dnat({ ...base, binding: 'bridge' }), [
      '-A KEYVIRT-PREROUTING -i eth0 -d 10.244.1.7/32 -p tcp --dport 8443 -j DNAT --to-destination 169.254.75.10',
      '-A KEYVIRT-PREROUTING -i eth0 -d 10.244.1.7/32 -p tcp --dport 49152:49215 -j DNAT --to-destination 169.254.75.10',
      '-A KEYVIRT-PREROUTING -i eth0 -d 10.244.1.7/32 -p udp --dport 49152:49215 -j DNAT --to-destination 169.254.75.10',
    ]);
    assert.ok(plan.iptables.includes('-A KEYVIRT-POSTROUTING -s 169.254.75.10/32 -o eth0 -j SNAT --to-source 10.244.1.7'));
  });

  void it('refuses what it cannot set up safely', () => {
    const bad: [string, PodNetworkPlanInput][] = [
      ['a launcher port', { ...base, ports: [{ port: 8443, protocol: 'TCP' }] }],
      ['an ephemeral launcher port', { ...base, ports: [{ port: 49160, protocol: 'UDP' }] }],
      ['port 0', { ...base, ports: [{ port: 0, protocol: 'TCP' }] }],
      ['ports on bridge', { ...base, binding: 'bridge', ports: [{ port: 22, protocol: 'TCP' }] }],
      ['a bad address', { ...base, pod: { ...pod, address: '10.244.1.7; reboot' } }],
      ['a bad gateway', { ...base, pod: { ...pod, gateway: 'fe80::1' } }],
      ['a bad prefix', { ...base, pod: { ...pod, prefixLength: 0 } }],
      ['a bad MTU', { ...base, pod: { ...pod, mtu: 100 } }],
      ['a bad uid', { ...base, launcherUid: -1 }],
    ];
    for (const [what, input] of bad) assert.throws(() => planPodNetwork(input), PodNetworkPlanError, what);
  });

  void it('knows the launcher\'s ports', () => {
    assert.deepEqual([22, 8443, 49151, 49152, 49215, 49216].map(isLauncherPort), [false, true, false, true, true, false]);
  });
});

void describe('pod network namespace lookup', () => {
  const uid = '0b7c1b2e-9d3f-4a51-8e6a-2f4c1d9e7a10';
  void it('recognises the kubelet\'s, systemd\'s and the node simulator\'s cgroup paths', () => {
    assert.ok(cgroupNamesPod(`12:memory:/kubepods/besteffort/pod${uid}/abc\n`, uid));
    assert.ok(cgroupNamesPod(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-1.scope\n`, uid));
    assert.ok(cgroupNamesPod(`4:cpu,cpuacct:/keyvirt/node-1/${uid}/launcher\n`, uid));
    assert.ok(!cgroupNamesPod(`4:cpu:/keyvirt/node-1/${uid}x/launcher\n`, uid));
    assert.ok(!cgroupNamesPod('0::/user.slice\n', uid));
  });

  void it('finds the pod\'s namespace in a /proc tree and refuses two namespaces for one pod', async () => {
    const proc = await mkdtemp(path.join(tmpdir(), 'kv-proc-'));
    try {
      const proc1 = async (pid: number, cgroup: string, ns: string): Promise<void> => {
        await mkdir(path.join(proc, String(pid), 'ns'), { recursive: true });
        await writeFile(path.join(proc, String(pid), 'cgroup'), cgroup);
        await symlink(ns, path.join(proc, String(pid), 'ns', 'net'));
      };
      await proc1(10, '0::/init.scope\n', 'net:[1]');
      await proc1(42, `4:cpu:/keyvirt/n/${uid}/launcher\n`, 'net:[77]');
      await proc1(43, `4:cpu:/keyvirt/n/${uid}/launcher\n`, 'net:[77]');
      assert.deepEqual(await findPodNetns(proc, uid), { pid: 42, path: path.join(proc, '42', 'ns', 'net') });
      assert.equal(await findPodNetns(proc, '11111111-2222-3333-4444-555555555555'), undefined);
      await proc1(44, `4:cpu:/keyvirt/n/${uid}/other\n`, 'net:[78]');
      await assert.rejects(findPodNetns(proc, uid), PodNetnsError);
      await assert.rejects(findPodNetns(proc, '../../etc'), PodNetnsError);
    } finally {
      await rm(proc, { recursive: true, force: true });
    }
  });
});

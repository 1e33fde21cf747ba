import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { cidrsOverlap, kubeProxyConfig, parseCidr, serviceRangeConflicts, serviceRouteArgs } from './service-network.ts';

void describe('Service CIDR checks', () => {
  const overlaps: [string, string, boolean][] = [
    ['10.96.0.0/16', '10.96.0.1', true],
    ['10.96.0.0/16', '10.96.255.255/32', true],
    ['10.96.0.0/16', '10.97.0.0/16', false],
    ['10.96.0.0/16', '10.0.0.0/8', true],
    ['10.96.0.0/16', '10.77.0.0/24', false],
    ['10.96.0.0/16', '0.0.0.0/0', true],
    ['10.96.0.0/16', '192.0.2.0/24', false],
  ];
  for (const [a, b, want] of overlaps) {
    void it(`${a} and ${b} ${want ? 'overlap' : 'do not overlap'}`, () => {
      assert.equal(cidrsOverlap(a, b), want);
      assert.equal(cidrsOverlap(b, a), want);
    });
  }

  void it('parses a CIDR to its network base and refuses what is not one', () => {
    assert.deepEqual(parseCidr('10.96.3.4/16'), { base: parseCidr('10.96.0.0/16').base, bits: 16 });
    assert.throws(() => parseCidr('10.96.0/16'), RangeError);
    assert.throws(() => parseCidr('10.96.0.0/33'), RangeError);
    assert.throws(() => parseCidr('10.300.0.0/16'), RangeError);
  });

  const conflicts: { name: string; addresses: string[]; routes: string[]; want: string[] }[] = [
    {
      name: 'this machine: none (the default route and the cluster\'s own Service route do not count)',
      addresses: ['1: lo    inet 127.0.0.1/8 scope host lo', '2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0', '5: kv-br0    inet 10.77.0.1/24 scope global kv-br0'],
      routes: ['default via 192.0.2.1 dev eth0', '10.77.0.0/24 dev kv-br0 proto kernel scope link src 10.77.0.1', '10.96.0.0/16 dev kv-br0 scope link', 'local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1'],
      want: [],
    },
    {
      name: 'an address inside the range',
      addresses: ['3: eth1    inet 10.96.4.2/24 scope global eth1'],
      routes: [],
      want: ['address 10.96.4.2/24 on eth1'],
    },
    {
      name: 'a LAN route covering the range',
      addresses: [],
      routes: ['10.0.0.0/8 via 192.0.2.254 dev eth0'],
      want: ['route 10.0.0.0/8 via 192.0.2.254 dev eth0'],
    },
    {
      name: 'the same range routed elsewhere than the bridge',
      addresses: [],
      routes: ['10.96.0.0/16 via 192.0.2.254 dev eth0'],
      want: ['route 10.96.0.0/16 via 192.0.2.254 dev eth0'],
    },
    {
      name: 'a local-table entry inside the range',
      addresses: [],
      routes: ['local 10.96.0.10 dev eth0 table local proto kernel scope host src 10.96.0.10'],
      want: ['route local 10.96.0.10 dev eth0 table local proto kernel scope host src 10.96.0.10'],
    },
  ];
  for (const row of conflicts) {
    void it(row.name, () => {
      assert.deepEqual(serviceRangeConflicts(row.addresses, row.routes, '10.96.0.0/16'), row.want);
    });
  }

  void it('routes the whole Service CIDR onto the cluster bridge', () => {
    assert.deepEqual(serviceRouteArgs('10.96.0.0/16'), ['route', 'replace', '10.96.0.0/16', 'dev', 'kv-br0']);
  });
});

void describe('kube-proxy configuration', () => {
  void it('iptables mode on the bridge gateway, loopback NodePorts and conntrack sysctls off, every Service packet masqueraded', () => {
    const config = parse(kubeProxyConfig('/k/kube-proxy.kubeconfig', { healthz: 1, metrics: 2 })) as Record<string, unknown>;
    assert.equal(config.kind, 'KubeProxyConfiguration');
    assert.equal(config.mode, 'iptables');
    assert.equal(config.bindAddress, '10.77.0.1');
    assert.equal(config.clusterCIDR, '10.77.0.0/24');
    assert.equal(config.healthzBindAddress, '127.0.0.1:1');
    assert.equal(config.metricsBindAddress, '127.0.0.1:2');
    assert.deepEqual(config.nodePortAddresses, ['10.77.0.1/32']);
    assert.deepEqual(config.clientConnection, { kubeconfig: '/k/kube-proxy.kubeconfig' });
    assert.deepEqual(config.iptables, { masqueradeAll: true, localhostNodePorts: false, syncPeriod: '30s', minSyncPeriod: '0s' });
    assert.deepEqual(config.conntrack, { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GuestLease } from '../api/pod-network.ts';
import {
  DhcpPacketError, encodeDhcpReply, MessageType, Option, optionAddress, parseDhcpMessage, prefixMask,
} from './dhcp-packet.ts';
import type { DhcpMessage } from './dhcp-packet.ts';
import { dhcpReply } from './dhcp-reply.ts';
import type { GuestOffer } from './dhcp-reply.ts';

const MAC = '52:54:00:12:34:56';
const masq: GuestLease = { v: 1, binding: 'masquerade', address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1', server: '10.0.2.1', mtu: 1450 };
const offer: GuestOffer = { lease: masq, mac: MAC, dns: ['10.96.0.10'], searchDomains: ['ns.svc.cluster.local'] };

/** A client request as busybox udhcpc builds one. */
function request(type: keyof typeof MessageType, opts: { mac?: string; options?: [number, number[]][]; ciaddr?: string; giaddr?: string; op?: number } = {}): Buffer {
  const buf = Buffer.alloc(240);
  buf[0] = opts.op ?? 1;
  buf[1] = 1;
  buf[2] = 6;
  buf.writeUInt32BE(0xdeadbeef, 4);
  Buffer.from((opts.ciaddr ?? '0.0.0.0').split('.').map(Number)).copy(buf, 12);
  Buffer.from((opts.giaddr ?? '0.0.0.0').split('.').map(Number)).copy(buf, 24);
  Buffer.from((opts.mac ?? MAC).split(':').map((h) => parseInt(h, 16))).copy(buf, 28);
  buf.writeUInt32BE(0x63825363, 236);
  const options = [[Option.messageType, [MessageType[type]]] as [number, number[]], ...(opts.options ?? [])];
  return Buffer.concat([buf, ...options.map(([c, v]) => Buffer.from([c, v.length, ...v])), Buffer.from([255])]);
}

const parse = (b: Buffer): DhcpMessage => parseDhcpMessage(b);
const ip = (a: string): number[] => a.split('.').map(Number);

void describe('DHCP replies', () => {
  const cases: { name: string; req: Buffer; type: string | undefined; yiaddr?: string }[] = [
    { name: 'discover → offer of the lease', req: request('discover'), type: 'offer', yiaddr: '10.0.2.2' },
    { name: 'request of the offered address → ack', req: request('request', { options: [[Option.requestedAddress, ip('10.0.2.2')], [Option.serverId, ip('10.0.2.1')]] }), type: 'ack', yiaddr: '10.0.2.2' },
    { name: 'renewal by ciaddr → ack', req: request('request', { ciaddr: '10.0.2.2' }), type: 'ack', yiaddr: '10.0.2.2' },
    { name: 'request of another address → nak', req: request('request', { options: [[Option.requestedAddress, ip('10.0.2.77')]] }), type: 'nak', yiaddr: '0.0.0.0' },
    { name: 'request to another server → silence', req: request('request', { options: [[Option.requestedAddress, ip('10.0.2.2')], [Option.serverId, ip('10.0.2.9')]] }), type: undefined },
    { name: 'another MAC → silence', req: request('discover', { mac: '52:54:00:00:00:01' }), type: undefined },
    { name: 'a relayed request → silence', req: request('discover', { giaddr: '10.1.1.1' }), type: undefined },
    { name: 'a reply sent as a request → silence', req: request('discover', { op: 2 }), type: undefined },
    { name: 'release → silence', req: request('release'), type: undefined },
    { name: 'inform → ack without an address', req: request('inform', { ciaddr: '10.0.2.2' }), type: 'ack', yiaddr: '0.0.0.0' },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const reply = dhcpReply(parse(c.req), offer);
      assert.equal(reply?.type, c.type);
      if (reply !== undefined) assert.equal(reply.yiaddr, c.yiaddr);
    });
  }

  void it('an offer carries mask, router, server, MTU, DNS and search domain, and parses back', () => {
    const reply = dhcpReply(parse(request('discover')), offer);
    assert.ok(reply !== undefined);
    const wire = encodeDhcpReply(reply);
    assert.ok(wire.length >= 300);
    // A reply parses like any message (op 2).
    const back = parseDhcpMessage(wire);
    assert.equal(back.type, 'offer');
    assert.equal(back.xid, 0xdeadbeef);
    assert.equal(back.chaddr, MAC);
    assert.equal(back.yiaddr, '10.0.2.2');
    assert.equal(optionAddress(back, Option.subnetMask), '255.255.255.0');
    assert.equal(optionAddress(back, Option.router), '10.0.2.1');
    assert.equal(optionAddress(back, Option.serverId), '10.0.2.1');
    assert.equal(optionAddress(back, Option.dns), '10.96.0.10');
    assert.equal(back.options.get(Option.mtu)?.readUInt16BE(0), 1450);
    assert.equal(back.options.get(Option.domainName)?.toString(), 'ns.svc.cluster.local');
    assert.equal(back.options.get(Option.classlessRoutes), undefined);
  });

  void it('a gateway outside a /32 pod address comes with classless routes to it', () => {
    const lease: GuestLease = { ...masq, binding: 'bridge', address: '10.244.1.7', prefixLength: 32, gateway: '169.254.1.1', server: '169.254.75.10' };
    const reply = dhcpReply(parse(request('discover')), { ...offer, lease });
    assert.ok(reply !== undefined);
    const routes = parseDhcpMessage(encodeDhcpReply(reply)).options.get(Option.classlessRoutes);
    assert.deepEqual([...(routes ?? [])], [32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1]);
  });

  void it('masks from prefix lengths', () => {
    assert.deepEqual([8, 16, 20, 24, 30, 32].map(prefixMask), ['255.0.0.0', '255.255.0.0', '255.255.240.0', '255.255.255.0', '255.255.255.252', '255.255.255.255']);
  });

  void it('refuses malformed messages with a DhcpPacketError', () => {
    const good = request('discover');
    const truncated = good.subarray(0, 100);
    const noCookie = Buffer.from(good);
    noCookie.writeUInt32BE(0, 236);
    const overrun = Buffer.concat([good.subarray(0, 240), Buffer.from([Option.messageType, 1, 1, 12, 200, 1])]);
    const noEnd = good.subarray(0, good.length - 1);
    const noType = Buffer.concat([good.subarray(0, 240), Buffer.from([255])]);
    const badType = Buffer.concat([good.subarray(0, 240), Buffer.from([Option.messageType, 1, 99, 255])]);
    const notEthernet = Buffer.from(good);
    notEthernet[1] = 6;
    for (const bad of [truncated, noCookie, overrun, noEnd, noType, badType, notEthernet]) {
      assert.throws(() => parseDhcpMessage(bad), DhcpPacketError);
    }
    // Random bytes never escape as anything but DhcpPacketError.
    for (let i = 0; i < 500; i++) {
      const noise = Buffer.from(good);
      for (let j = 0; j < 8; j++) noise[240 + Math.floor(Math.random() * (noise.length - 240))] = Math.floor(Math.random() * 256);
      try {
        parseDhcpMessage(noise);
      } catch (err) {
        assert.ok(err instanceof DhcpPacketError);
      }
    }
  });
});

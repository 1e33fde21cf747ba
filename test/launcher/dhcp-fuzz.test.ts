// The launcher's DHCP server against a hostile guest (ADR 0095): tens of thousands of
// generated messages — valid requests, the same mutated, noise — through the parser and
// the reply decision, then a few thousand of them at the real server on UDP sockets.
// Nothing throws but DhcpPacketError; a message the server must not answer (not a
// BOOTREQUEST, not Ethernet, no cookie, relayed, another MAC, options past the end, no
// valid message type, a message type it does not serve) gets no reply; every reply is
// the lease's or a NAK, to the asking MAC, within 576 bytes (RFC 2131's minimum).
// KEYVIRT_FUZZ_SEED replays a run; the seed is printed.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { GuestLease } from '../../launcher/src/api/pod-network.ts';
import { DhcpPacketError, encodeDhcpReply, parseDhcpMessage } from '../../launcher/src/network/dhcp-packet.ts';
import { dhcpReply, type GuestOffer } from '../../launcher/src/network/dhcp-reply.ts';
import { DHCP_REPLIES_PER_SECOND, DHCP_REPLY_BURST, DhcpServer } from '../../launcher/src/network/dhcp-server.ts';
import { dhcpRequest, type GuestIdentity, mutatedRequest, replyFacts, validRequest } from './dhcp-fuzz.ts';
import { Random } from './http-fuzz.ts';

const seed = Number(process.env.KEYVIRT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const UNIT_MESSAGES = 40_000;
const SOCKET_MESSAGES = 3000;
const MAX_REPLY_BYTES = 576;

const lease: GuestLease = { v: 1, binding: 'bridge', address: '10.244.1.7', prefixLength: 32, gateway: '169.254.1.1', server: '127.0.0.1', mtu: 1450 };
const offer: GuestOffer = { lease, mac: '52:54:00:ab:cd:ef', dns: ['10.96.0.10', '10.96.0.11'], searchDomains: ['vms.svc.cluster.local', 'svc.cluster.local'] };
const guest: GuestIdentity = { mac: offer.mac, address: lease.address, server: lease.server };

/**
 * Whether the server may answer these bytes, decided by hand from RFC 2131's layout
 * (not by the codec under test): a BOOTREQUEST over Ethernet from the guest's MAC, not
 * relayed, with the cookie, options that end inside the message, and a DISCOVER,
 * REQUEST or INFORM type.
 */
function mayAnswer(b: Buffer): boolean {
  if (b.length < 241 || b[0] !== 1 || b[1] !== 1 || b[2] !== 6) return false;
  if (b.readUInt32BE(236) !== 0x63825363 || b.readUInt32BE(24) !== 0) return false;
  if ([...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':') !== guest.mac) return false;
  let type: number | undefined;
  let i = 240;
  for (;;) {
    if (i >= b.length) return false;
    const code = b[i] ?? 255;
    if (code === 255) break;
    if (code === 0) {
      i += 1;
      continue;
    }
    if (i + 1 >= b.length) return false;
    const len = b[i + 1] ?? 0;
    if (i + 2 + len > b.length) return false;
    if (code === 53) type = len === 1 ? b[i + 2] : undefined;
    i += 2 + len;
  }
  return type === 1 || type === 3 || type === 8;
}

/** Checks one reply against its request; returns the reply's message type. */
function checkReply(request: Buffer, reply: Buffer, context: string): number | undefined {
  assert.ok(reply.length <= MAX_REPLY_BYTES, `${context}: reply of ${reply.length} bytes`);
  const facts = replyFacts(reply);
  assert.equal(facts.op, 2, context);
  assert.equal(facts.chaddr, guest.mac, context);
  assert.equal(facts.xid, request.readUInt32BE(4), context);
  assert.ok([lease.address, '0.0.0.0'].includes(facts.yiaddr), `${context}: yiaddr ${facts.yiaddr}`);
  assert.ok(facts.type === 2 || facts.type === 5 || facts.type === 6, `${context}: reply type ${String(facts.type)}`);
  return facts.type;
}

/** What the codec and the decision make of `bytes`: the encoded reply, or undefined for silence. */
function answer(bytes: Buffer): Buffer | undefined {
  try {
    const reply = dhcpReply(parseDhcpMessage(bytes), offer);
    return reply === undefined ? undefined : encodeDhcpReply(reply);
  } catch (err) {
    if (err instanceof DhcpPacketError) return undefined;
    throw err;
  }
}

void describe(`DHCP server under hostile guest messages (seed ${seed})`, () => {
  void it('the parser and the reply decision: no throw but DhcpPacketError, no reply to what must go unanswered', (t) => {
    const r = new Random(seed);
    const counts = { answered: 0, silent: 0, mutated: 0 };
    for (let n = 0; n < UNIT_MESSAGES; n++) {
      const valid = r.chance(0.2);
      const m = valid ? { bytes: validRequest(r, guest), how: 'valid' } : mutatedRequest(r, guest);
      if (!valid) counts.mutated++;
      const context = `message ${n} (${m.how}, seed ${seed}): ${m.bytes.subarray(0, 64).toString('hex')}`;
      let reply: Buffer | undefined;
      try {
        reply = answer(m.bytes);
      } catch (err) {
        assert.fail(`${context}: threw ${(err as Error).stack ?? String(err)}`);
      }
      if (reply === undefined) {
        counts.silent++;
        continue;
      }
      assert.ok(mayAnswer(m.bytes), `${context}: answered a message that must go unanswered`);
      checkReply(m.bytes, reply, context);
      counts.answered++;
    }
    t.diagnostic(`answered=${counts.answered} silent=${counts.silent} mutated=${counts.mutated}`);
    assert.ok(counts.answered > UNIT_MESSAGES / 20, 'the generator produced answerable requests');
    assert.ok(counts.silent > UNIT_MESSAGES / 2, 'the generator produced unanswerable ones');
  });

  void it('parsed options stay inside the message: each a view of the datagram, at most 255 bytes', () => {
    const r = new Random(seed ^ 0x5a5a5a5a);
    for (let n = 0; n < UNIT_MESSAGES / 4; n++) {
      const m = mutatedRequest(r, guest);
      let parsed;
      try {
        parsed = parseDhcpMessage(m.bytes);
      } catch (err) {
        assert.ok(err instanceof DhcpPacketError, `${m.how}: ${String(err)}`);
        continue;
      }
      for (const [code, value] of parsed.options) {
        assert.ok(value.length <= 255, `option ${code} of ${value.length} bytes`);
        assert.equal(value.buffer, m.bytes.buffer, `option ${code} is not a view of the message`);
        assert.ok(value.byteOffset >= m.bytes.byteOffset && value.byteOffset + value.length <= m.bytes.byteOffset + m.bytes.length, `option ${code} outside the message`);
      }
    }
  });

  void it('the real server on UDP sockets: answers exactly the answerable messages, keeps serving', { timeout: 120_000 }, async (t) => {
    // High ports on loopback: the server binds 0.0.0.0 and its own address as in the pod, and broadcasts its replies.
    const { client, replies, serverPort, server } = await serverOnLoopback({ replyBurst: 10_000, repliesPerSecond: 10_000 });
    t.after(async () => {
      await server.close();
      client.close();
    });
    const r = new Random(seed ^ 0x1f2e3d4c);
    const send = async (bytes: Buffer): Promise<void> => {
      await new Promise<void>((resolve, reject) => client.send(bytes, serverPort, '127.0.0.1', (err) => (err === null ? resolve() : reject(err))));
    };
    // One valid DISCOVER first: the reply reaches the client (the path works at all).
    await send(validDiscover());
    for (let i = 0; i < 100 && replies.length === 0; i++) await sleep(20);
    assert.equal(replies.length, 1, 'a DISCOVER is answered over the sockets');
    replies.length = 0;
    let expected = 0;
    const sent: Buffer[] = [];
    for (let n = 0; n < SOCKET_MESSAGES; n++) {
      const m = r.chance(0.1) ? validRequest(r, guest) : mutatedRequest(r, guest).bytes;
      if (m.length > 65_507) continue;
      const answerable = answer(m) !== undefined;
      sent.push(m);
      await send(m);
      if (answerable) {
        // Its reply before the next message: a reply lost to a full socket buffer must not pass for a silence.
        expected++;
        for (let i = 0; i < 100 && replies.length < expected; i++) await sleep(10);
        assert.equal(replies.length, expected, `message ${n} (seed ${seed}) is answered: ${m.subarray(0, 64).toString('hex')}`);
      } else {
        await sleep(1); // the server reads it before the next: a full socket buffer is not the subject here
      }
    }
    for (let i = 0; i < 200 && replies.length < expected; i++) await sleep(20);
    await sleep(200);
    t.diagnostic(`sent=${sent.length} expected=${expected} replies=${replies.length}`);
    assert.equal(replies.length, expected, 'one reply per answerable message, none for the others');
    assert.equal(server.answered, expected + 1);
    for (const reply of replies) assert.ok(reply.length <= MAX_REPLY_BYTES);
    // Still serving after the storm.
    await send(validDiscover());
    for (let i = 0; i < 100 && replies.length === expected; i++) await sleep(20);
    assert.equal(replies.length, expected + 1, 'the server still answers');
  });
});

void describe('DHCP server under a request flood', () => {
  void it(`answers at most ${DHCP_REPLY_BURST} at once and ${DHCP_REPLIES_PER_SECOND} a second after, then serves again`, { timeout: 60_000 }, async (t) => {
    const { client, replies, serverPort, server } = await serverOnLoopback({});
    t.after(async () => {
      await server.close();
      client.close();
    });
    const started = Date.now();
    for (let n = 0; n < 1000; n++) {
      await new Promise<void>((resolve, reject) => client.send(validDiscover(), serverPort, '127.0.0.1', (err) => (err === null ? resolve() : reject(err))));
      if (n % 20 === 19) await sleep(1);
    }
    const elapsed = (Date.now() - started) / 1000;
    await sleep(300);
    const allowed = DHCP_REPLY_BURST + Math.ceil((elapsed + 0.3) * DHCP_REPLIES_PER_SECOND);
    t.diagnostic(`flood of 1000 in ${elapsed.toFixed(2)} s: ${replies.length} replies (at most ${allowed}), ${server.throttled} throttled`);
    assert.ok(replies.length >= DHCP_REPLY_BURST && replies.length <= allowed, `${replies.length} replies`);
    assert.equal(server.throttled + server.answered, 1000);
    await sleep(1000);
    const before = replies.length;
    await new Promise<void>((resolve, reject) => client.send(validDiscover(), serverPort, '127.0.0.1', (err) => (err === null ? resolve() : reject(err))));
    for (let i = 0; i < 100 && replies.length === before; i++) await sleep(10);
    assert.equal(replies.length, before + 1, 'answered again after a pause');
  });
});

/** The real server on high loopback ports, and a client socket collecting its broadcast replies. */
async function serverOnLoopback(limits: { replyBurst?: number; repliesPerSecond?: number }): Promise<{ client: dgram.Socket; replies: Buffer[]; serverPort: number; server: DhcpServer }> {
  const client = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  client.bind({ address: '0.0.0.0', port: 0 });
  await once(client, 'listening');
  const clientPort = client.address().port;
  const probe = dgram.createSocket('udp4');
  probe.bind({ address: '127.0.0.1', port: 0 });
  await once(probe, 'listening');
  const serverPort = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const replies: Buffer[] = [];
  client.on('message', (msg) => replies.push(msg));
  const server = new DhcpServer({ offer, logger: pino({ level: 'silent' }), serverPort, clientPort, ...limits });
  await server.start();
  return { client, replies, serverPort, server };
}

function validDiscover(): Buffer {
  return dhcpRequest('discover', guest, [], 0xcafe0001);
}

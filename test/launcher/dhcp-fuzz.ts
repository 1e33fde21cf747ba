// Generates DHCP messages a hostile guest might send, from a seed (the same seed gives the
// same messages): well-formed requests of every type, the same mutated (bit flips,
// truncations, extensions, option lengths past the end, duplicated and overlong options,
// wrong cookies, hardware types, ops), and pure noise. Each message says whether it is
// one the server must answer, so a test can count replies.
import { DHCP_MAGIC_COOKIE, MessageType, Option } from '../../launcher/src/network/dhcp-packet.ts';
import { Random } from './http-fuzz.ts';

export interface FuzzedMessage {
  bytes: Buffer;
  /** What was done to it, for the failure message. */
  how: string;
}

export interface GuestIdentity {
  mac: string;
  address: string;
  server: string;
}

const TYPES = Object.keys(MessageType) as (keyof typeof MessageType)[];

function macBytes(mac: string): number[] {
  return mac.split(':').map((h) => parseInt(h, 16));
}

function ipBytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** A well-formed BOOTREQUEST of `type`, as a client builds it, with optional extra options. */
export function dhcpRequest(type: keyof typeof MessageType, guest: GuestIdentity, extra: readonly [number, readonly number[]][] = [], xid = 0x1234abcd): Buffer {
  const fixed = Buffer.alloc(240);
  fixed[0] = 1;
  fixed[1] = 1;
  fixed[2] = 6;
  fixed.writeUInt32BE(xid >>> 0, 4);
  Buffer.from(macBytes(guest.mac)).copy(fixed, 28);
  fixed.writeUInt32BE(DHCP_MAGIC_COOKIE, 236);
  const options: [number, readonly number[]][] = [[Option.messageType, [MessageType[type]]], ...extra];
  return Buffer.concat([fixed, ...options.map(([code, value]) => Buffer.from([code, value.length, ...value])), Buffer.from([Option.end])]);
}

/** A well-formed request the guest could send, picked at random. */
export function validRequest(r: Random, guest: GuestIdentity): Buffer {
  const type = r.pick(TYPES);
  const extra: [number, number[]][] = [];
  if (r.chance(0.5)) extra.push([Option.requestedAddress, ipBytes(r.chance(0.7) ? guest.address : '10.9.9.9')]);
  if (r.chance(0.5)) extra.push([Option.serverId, ipBytes(r.chance(0.7) ? guest.server : '10.9.9.1')]);
  if (r.chance(0.3)) extra.push([Option.hostName, [...Buffer.from('guest')]]);
  if (r.chance(0.3)) extra.push([55, [1, 3, 6, 15, 26, 28, 51, 58, 59, 121]]);
  return dhcpRequest(type, guest, extra, r.int(2 ** 32));
}

const MUTATIONS: readonly [string, (r: Random, b: Buffer) => Buffer][] = [
  ['flip bytes', (r, b) => {
    const out = Buffer.from(b);
    for (let n = 1 + r.int(8); n > 0; n--) out[r.int(out.length)] = r.int(256);
    return out;
  }],
  ['truncate', (r, b) => b.subarray(0, r.int(b.length))],
  ['drop the end option', (_r, b) => b.subarray(0, b.length - 1)],
  ['garbage after the header', (r, b) => Buffer.concat([b.subarray(0, 240), r.bytes(r.int(400))])],
  ['option length past the end', (r, b) => Buffer.concat([b.subarray(0, b.length - 1), Buffer.from([r.int(254) + 1, 200 + r.int(56)]), r.bytes(r.int(20))])],
  ['option code without a length', (r, b) => Buffer.concat([b.subarray(0, b.length - 1), Buffer.from([1 + r.int(253)])])],
  ['message type of another length', (r, b) => {
    const out = Buffer.from(b);
    out[241] = r.pick([0, 2, 4, 255]);
    return out;
  }],
  ['unknown message type', (r, b) => {
    const out = Buffer.from(b);
    out[242] = r.pick([0, 9, 13, 255]);
    return out;
  }],
  ['another hardware type or length', (r, b) => {
    const out = Buffer.from(b);
    if (r.chance(0.5)) out[1] = r.pick([0, 6, 32, 255]);
    else out[2] = r.pick([0, 5, 16, 255]);
    return out;
  }],
  ['a BOOTREPLY or another op', (r, b) => {
    const out = Buffer.from(b);
    out[0] = r.pick([0, 2, 3, 255]);
    return out;
  }],
  ['wrong magic cookie', (r, b) => {
    const out = Buffer.from(b);
    out.writeUInt32BE(r.int(2 ** 32) === DHCP_MAGIC_COOKIE ? 0 : r.int(2 ** 32), 236);
    return out;
  }],
  ['relayed (giaddr set)', (r, b) => {
    const out = Buffer.from(b);
    out.writeUInt32BE(1 + r.int(2 ** 32 - 1), 24);
    return out;
  }],
  ['another MAC', (r, b) => {
    const out = Buffer.from(b);
    out[28 + r.int(6)] ^= 1 + r.int(255);
    return out;
  }],
  ['hundreds of options', (r, b) => {
    const many = Array.from({ length: 100 + r.int(300) }, () => Buffer.from([1 + r.int(253), 3, ...r.bytes(3)]));
    return Buffer.concat([b.subarray(0, b.length - 1), ...many, Buffer.from([Option.end])]);
  }],
  ['pad only', (r, b) => Buffer.concat([b.subarray(0, 240), Buffer.alloc(r.int(2000))])],
  ['a huge datagram', (r, b) => Buffer.concat([b.subarray(0, b.length - 1), Buffer.alloc(8000 + r.int(50_000), 0), Buffer.from([Option.end])])],
  ['noise', (r) => r.bytes(r.int(700))],
];

/**
 * A message that must get no answer: a mutation of a valid request that breaks what the
 * server relies on, checked by the caller's oracle, or noise.
 */
export function mutatedRequest(r: Random, guest: GuestIdentity): FuzzedMessage {
  const [how, mutate] = r.pick(MUTATIONS);
  return { bytes: mutate(r, validRequest(r, guest)), how };
}

/** What a reply to `request` must carry to be one of the lease's: parsed by hand, independent of the codec. */
export function replyFacts(reply: Buffer): { op: number; xid: number; yiaddr: string; chaddr: string; type: number | undefined } {
  let type: number | undefined;
  for (let i = 240; i < reply.length; ) {
    const code = reply[i];
    if (code === undefined || code === Option.end) break;
    if (code === Option.pad) {
      i += 1;
      continue;
    }
    const len = reply[i + 1] ?? 0;
    if (code === Option.messageType) type = reply[i + 2];
    i += 2 + len;
  }
  const hex = [...reply.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':');
  return { op: reply[0] ?? 0, xid: reply.readUInt32BE(4), yiaddr: [...reply.subarray(16, 20)].join('.'), chaddr: hex, type };
}

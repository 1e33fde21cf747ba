// DHCPv4 messages (RFC 2131 layout, RFC 2132 options): parsing what a guest sends and
// encoding what the launcher answers. Bounds-checked throughout: a hostile guest may
// send any bytes; a message that does not parse is a DhcpPacketError, never a crash.

export class DhcpPacketError extends Error {
  override name = 'DhcpPacketError';
}

export const DHCP_MAGIC_COOKIE = 0x63825363;
const FIXED_LENGTH = 236;

export const MessageType = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
  inform: 8,
} as const;
export type MessageTypeName = keyof typeof MessageType;

export const Option = {
  pad: 0,
  subnetMask: 1,
  router: 3,
  dns: 6,
  hostName: 12,
  domainName: 15,
  mtu: 26,
  requestedAddress: 50,
  leaseTime: 51,
  messageType: 53,
  serverId: 54,
  renewalTime: 58,
  rebindingTime: 59,
  classlessRoutes: 121,
  end: 255,
} as const;

export interface DhcpMessage {
  op: 1 | 2;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The client's hardware address, lower-case `aa:bb:…` (htype 1, hlen 6 only). */
  chaddr: string;
  type: MessageTypeName;
  /** Options by code, raw (the last occurrence of a code wins). */
  options: ReadonlyMap<number, Buffer>;
}

function ipAt(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

export function ipBytes(address: string): Buffer {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new DhcpPacketError(`not an IPv4 address: ${address}`);
  return Buffer.from(parts);
}

function macBytes(mac: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new DhcpPacketError(`not a MAC address: ${mac}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

const TYPE_NAMES = new Map<number, MessageTypeName>(Object.entries(MessageType).map(([k, v]) => [v, k as MessageTypeName]));

/** Parses a client's BOOTREQUEST; throws DhcpPacketError on anything malformed. */
export function parseDhcpMessage(buf: Buffer): DhcpMessage {
  if (buf.length < FIXED_LENGTH + 4) throw new DhcpPacketError(`message of ${buf.length} bytes is too short`);
  const op = buf[0];
  if (op !== 1 && op !== 2) throw new DhcpPacketError(`op ${String(op)} is neither request nor reply`);
  if (buf[1] !== 1 || buf[2] !== 6) throw new DhcpPacketError('hardware type is not Ethernet');
  if (buf.readUInt32BE(FIXED_LENGTH) !== DHCP_MAGIC_COOKIE) throw new DhcpPacketError('no DHCP magic cookie');
  const options = new Map<number, Buffer>();
  let i = FIXED_LENGTH + 4;
  for (;;) {
    if (i >= buf.length) throw new DhcpPacketError('options end without an end option');
    const code = buf[i] ?? Option.end;
    if (code === Option.end) break;
    if (code === Option.pad) {
      i += 1;
      continue;
    }
    const len = buf[i + 1];
    if (len === undefined || i + 2 + len > buf.length) throw new DhcpPacketError(`option ${code} runs past the message`);
    options.set(code, buf.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  const typeOption = options.get(Option.messageType);
  const type = typeOption?.length === 1 ? TYPE_NAMES.get(typeOption[0] ?? 0) : undefined;
  if (type === undefined) throw new DhcpPacketError('no valid message type option');
  const chaddr = [...buf.subarray(28, 34)].map((b) => b.toString(16).padStart(2, '0')).join(':');
  return {
    op, xid: buf.readUInt32BE(4), secs: buf.readUInt16BE(8), flags: buf.readUInt16BE(10),
    ciaddr: ipAt(buf, 12), yiaddr: ipAt(buf, 16), siaddr: ipAt(buf, 20), giaddr: ipAt(buf, 24),
    chaddr, type, options,
  };
}

/** An option's value as an IPv4 address, when it is one. */
export function optionAddress(message: DhcpMessage, code: number): string | undefined {
  const value = message.options.get(code);
  return value?.length === 4 ? ipAt(value, 0) : undefined;
}

export interface ReplyFields {
  type: MessageTypeName;
  xid: number;
  flags: number;
  chaddr: string;
  yiaddr: string;
  siaddr: string;
  options: readonly (readonly [number, Buffer])[];
}

/** Encodes a BOOTREPLY. */
export function encodeDhcpReply(reply: ReplyFields): Buffer {
  const fixed = Buffer.alloc(FIXED_LENGTH + 4);
  fixed[0] = 2;
  fixed[1] = 1;
  fixed[2] = 6;
  fixed.writeUInt32BE(reply.xid >>> 0, 4);
  fixed.writeUInt16BE(reply.flags & 0x8000, 10);
  ipBytes(reply.yiaddr).copy(fixed, 16);
  ipBytes(reply.siaddr).copy(fixed, 20);
  macBytes(reply.chaddr).copy(fixed, 28);
  fixed.writeUInt32BE(DHCP_MAGIC_COOKIE, FIXED_LENGTH);
  const parts: Buffer[] = [fixed, Buffer.from([Option.messageType, 1, MessageType[reply.type]])];
  for (const [code, value] of reply.options) {
    if (value.length > 255) throw new DhcpPacketError(`option ${code} is longer than 255 bytes`);
    parts.push(Buffer.from([code, value.length]), value);
  }
  parts.push(Buffer.from([Option.end]));
  const out = Buffer.concat(parts);
  // BOOTP relays and old clients expect at least 300 bytes.
  return out.length >= 300 ? out : Buffer.concat([out, Buffer.alloc(300 - out.length)]);
}

export function uint32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

export function uint16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  return b;
}

export function prefixMask(prefixLength: number): string {
  const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join('.');
}

/** RFC 3442 classless static routes: `[destination, prefixLength, router]`. */
export function classlessRoutes(routes: readonly (readonly [string, number, string])[]): Buffer {
  return Buffer.concat(
    routes.map(([dest, len, router]) => Buffer.concat([Buffer.from([len]), ipBytes(dest).subarray(0, Math.ceil(len / 8)), ipBytes(router)])),
  );
}

// RFC 6455 framing for the client side: frames the client sends are masked, frames the
// server sends are not (a masked server frame is a protocol error). Pure: bytes in,
// frames out; the connection (websocket-client.ts) does the I/O.
import { randomBytes } from 'node:crypto';

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** Longest message the plugin accepts from the server (a console or VNC frame is far smaller). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export class WebSocketProtocolError extends Error {
  override readonly name = 'WebSocketProtocolError';
}

export interface Frame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
}

/** A client frame: FIN set, masked with `mask` (4 random bytes unless given, for tests). */
export function encodeClientFrame(opcode: number, payload: Buffer, mask: Buffer = randomBytes(4)): Buffer {
  const len = payload.length;
  const lengthBytes = len < 126 ? 0 : len < 65_536 ? 2 : 8;
  const header = Buffer.alloc(2 + lengthBytes + 4);
  header[0] = 0x80 | opcode;
  if (lengthBytes === 0) header[1] = 0x80 | len;
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  mask.copy(header, 2 + lengthBytes, 0, 4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0);
  return Buffer.concat([header, body]);
}

/**
 * Accumulates bytes from the server and yields whole frames. Control frames must be
 * final and at most 125 bytes; reserved bits must be clear (no extension is negotiated).
 */
export class FrameDecoder {
  #buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const frames: Frame[] = [];
    for (;;) {
      const frame = this.#next();
      if (frame === undefined) return frames;
      frames.push(frame);
    }
  }

  #next(): Frame | undefined {
    const b = this.#buffer;
    if (b.length < 2) return undefined;
    const first = b[0] ?? 0;
    const second = b[1] ?? 0;
    if ((first & 0x70) !== 0) throw new WebSocketProtocolError('server frame with reserved bits set');
    if ((second & 0x80) !== 0) throw new WebSocketProtocolError('server frame is masked');
    const fin = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    let len = second & 0x7f;
    let offset = 2;
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = b.readUInt16BE(2);
      offset = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(MAX_MESSAGE_BYTES)) throw new WebSocketProtocolError(`server frame of ${big.toString()} bytes exceeds ${String(MAX_MESSAGE_BYTES)}`);
      len = Number(big);
      offset = 10;
    }
    if (opcode >= 0x8 && (!fin || len > 125)) throw new WebSocketProtocolError('control frame fragmented or longer than 125 bytes');
    if (b.length < offset + len) return undefined;
    const payload = Buffer.from(b.subarray(offset, offset + len));
    this.#buffer = b.subarray(offset + len);
    return { fin, opcode, payload };
  }
}

/**
 * Joins fragmented data frames into messages; control frames pass through at once
 * (they may arrive between fragments).
 */
export class MessageAssembler {
  #opcode: number | undefined;
  #parts: Buffer[] = [];
  #size = 0;

  /** A whole message (or control frame), or undefined while fragments are pending. */
  accept(frame: Frame): { opcode: number; payload: Buffer } | undefined {
    if (frame.opcode >= 0x8) return { opcode: frame.opcode, payload: frame.payload };
    if (frame.opcode === OPCODE.continuation) {
      if (this.#opcode === undefined) throw new WebSocketProtocolError('continuation frame without a message');
    } else if (frame.opcode === OPCODE.text || frame.opcode === OPCODE.binary) {
      if (this.#opcode !== undefined) throw new WebSocketProtocolError('new message before the last one ended');
      this.#opcode = frame.opcode;
    } else {
      throw new WebSocketProtocolError(`unknown opcode ${String(frame.opcode)}`);
    }
    this.#size += frame.payload.length;
    if (this.#size > MAX_MESSAGE_BYTES) throw new WebSocketProtocolError(`message exceeds ${String(MAX_MESSAGE_BYTES)} bytes`);
    this.#parts.push(frame.payload);
    if (!frame.fin) return undefined;
    const message = { opcode: this.#opcode ?? OPCODE.binary, payload: Buffer.concat(this.#parts) };
    this.#opcode = undefined;
    this.#parts = [];
    this.#size = 0;
    return message;
  }
}

/** The payload of a close frame: code (2 bytes, big-endian) and a UTF-8 reason. */
export function closePayload(code: number, reason = ''): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const out = Buffer.alloc(2 + text.length);
  out.writeUInt16BE(code, 0);
  text.copy(out, 2);
  return out;
}

export function parseClosePayload(payload: Buffer): { code: number; reason: string } {
  if (payload.length < 2) return { code: 1005, reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') };
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { closePayload, encodeClientFrame, FrameDecoder, MessageAssembler, OPCODE, parseClosePayload, WebSocketProtocolError } from './websocket-frames.ts';

/** A server frame (unmasked). */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const ext = len < 126 ? Buffer.alloc(0) : len < 65_536 ? Buffer.alloc(2) : Buffer.alloc(8);
  if (len >= 126 && len < 65_536) ext.writeUInt16BE(len);
  if (len >= 65_536) ext.writeBigUInt64BE(BigInt(len));
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, len < 126 ? len : len < 65_536 ? 126 : 127]), ext, payload]);
}

function unmask(frame: Buffer): { opcode: number; payload: Buffer } {
  const len7 = (frame[1] ?? 0) & 0x7f;
  const offset = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
  const mask = frame.subarray(offset, offset + 4);
  const body = frame.subarray(offset + 4);
  return { opcode: (frame[0] ?? 0) & 0x0f, payload: Buffer.from(body.map((b, i) => b ^ (mask[i & 3] ?? 0))) };
}

void describe('websocket frames', () => {
  for (const size of [0, 5, 125, 126, 65_535, 65_536, 70_000]) {
    void it(`client frames of ${String(size)} bytes are masked and round-trip`, () => {
      const payload = Buffer.alloc(size, 7);
      const frame = encodeClientFrame(OPCODE.binary, payload, Buffer.from([1, 2, 3, 4]));
      assert.equal((frame[0] ?? 0) & 0x80, 0x80, 'FIN');
      assert.equal((frame[1] ?? 0) & 0x80, 0x80, 'MASK');
      const back = unmask(frame);
      assert.equal(back.opcode, OPCODE.binary);
      assert.deepEqual(back.payload, payload);
    });
  }

  void it('decodes server frames split at every byte', () => {
    const bytes = Buffer.concat([serverFrame(OPCODE.binary, Buffer.from('hello')), serverFrame(OPCODE.text, Buffer.alloc(300, 65))]);
    const decoder = new FrameDecoder();
    const frames = [];
    for (const b of bytes) frames.push(...decoder.push(Buffer.from([b])));
    assert.deepEqual(frames.map((f) => [f.opcode, f.payload.length]), [[OPCODE.binary, 5], [OPCODE.text, 300]]);
  });

  void it('joins fragments; a ping between fragments passes at once', () => {
    const a = new MessageAssembler();
    assert.equal(a.accept({ fin: false, opcode: OPCODE.binary, payload: Buffer.from('ab') }), undefined);
    assert.deepEqual(a.accept({ fin: true, opcode: OPCODE.ping, payload: Buffer.from('p') }), { opcode: OPCODE.ping, payload: Buffer.from('p') });
    assert.deepEqual(a.accept({ fin: true, opcode: OPCODE.continuation, payload: Buffer.from('cd') }), { opcode: OPCODE.binary, payload: Buffer.from('abcd') });
  });

  const bad: { what: string; bytes: Buffer; message: RegExp }[] = [
    { what: 'masked server frame', bytes: Buffer.from([0x82, 0x81, 0, 0, 0, 0, 1]), message: /masked/ },
    { what: 'reserved bits', bytes: Buffer.from([0xc2, 0x00]), message: /reserved bits/ },
    { what: 'long control frame', bytes: Buffer.concat([Buffer.from([0x89, 126, 0, 200]), Buffer.alloc(200)]), message: /control frame/ },
    { what: 'huge frame', bytes: Buffer.from([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]), message: /exceeds/ },
  ];
  for (const c of bad) {
    void it(`refuses a ${c.what}`, () => {
      assert.throws(() => new FrameDecoder().push(c.bytes), (e: unknown) => e instanceof WebSocketProtocolError && c.message.test(e.message));
    });
  }

  void it('refuses a continuation without a message and a message inside another', () => {
    assert.throws(() => new MessageAssembler().accept({ fin: true, opcode: OPCODE.continuation, payload: Buffer.alloc(0) }), /continuation frame without a message/);
    const a = new MessageAssembler();
    a.accept({ fin: false, opcode: OPCODE.text, payload: Buffer.alloc(1) });
    assert.throws(() => a.accept({ fin: true, opcode: OPCODE.binary, payload: Buffer.alloc(1) }), /new message before the last one ended/);
  });

  void it('close payloads carry code and reason', () => {
    assert.deepEqual(parseClosePayload(closePayload(1011, 'launcher gone')), { code: 1011, reason: 'launcher gone' });
    assert.deepEqual(parseClosePayload(Buffer.alloc(0)), { code: 1005, reason: '' });
  });
});

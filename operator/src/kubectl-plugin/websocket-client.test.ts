// The websocket client against a small RFC 6455 server on loopback: handshake with the
// kubeconfig's bearer token, data both ways, ping → pong, close, and a refused upgrade
// read as the server's Status.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError } from '../runtime/kube-client.ts';
import { openWebSocket } from './websocket-client.ts';
import { OPCODE } from './websocket-frames.ts';

function serverFrame(opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]);
}

/** Reads masked client frames (small ones are enough here). */
function clientFrames(buffer: Buffer): { frames: { opcode: number; payload: Buffer }[]; rest: Buffer } {
  const frames = [];
  let b = buffer;
  while (b.length >= 6) {
    const len = (b[1] ?? 0) & 0x7f;
    assert.ok(len < 126, 'test frames are small');
    assert.equal((b[1] ?? 0) & 0x80, 0x80, 'client frames are masked');
    if (b.length < 6 + len) break;
    const mask = b.subarray(2, 6);
    const payload = Buffer.from(b.subarray(6, 6 + len).map((x, i) => x ^ (mask[i & 3] ?? 0)));
    frames.push({ opcode: (b[0] ?? 0) & 0x0f, payload });
    b = b.subarray(6 + len);
  }
  return { frames, rest: b };
}

void describe('openWebSocket', () => {
  let server: http.Server;
  let kc: KubeConfig;
  const seen: { auth?: string; protocol?: string; pong?: string; closeCode?: number } = {};

  before(async () => {
    server = http.createServer();
    server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
      if (req.url === '/denied') {
        const body = JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Forbidden', code: 403, message: 'user "bob" cannot get virtualmachines/console in namespace "ns"' });
        socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${String(Buffer.byteLength(body))}\r\nConnection: close\r\n\r\n${body}`);
        return;
      }
      seen.auth = req.headers.authorization;
      seen.protocol = req.headers['sec-websocket-protocol'];
      const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: plain.keyvirt.io\r\n\r\n`);
      socket.write(serverFrame(OPCODE.binary, Buffer.from('login: ')));
      socket.write(serverFrame(OPCODE.ping, Buffer.from('are-you-there')));
      let pending: Buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        const parsed = clientFrames(Buffer.concat([pending, chunk]));
        pending = parsed.rest;
        for (const f of parsed.frames) {
          if (f.opcode === OPCODE.pong) seen.pong = f.payload.toString();
          if (f.opcode === OPCODE.binary) socket.write(serverFrame(OPCODE.binary, Buffer.concat([Buffer.from('echo:'), f.payload])));
          if (f.opcode === OPCODE.close) {
            seen.closeCode = f.payload.readUInt16BE(0);
            socket.end(serverFrame(OPCODE.close, f.payload));
          }
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${String(port)}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'secret-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  void it('upgrades with the credentials and subprotocol, carries bytes both ways, answers pings, closes with 1000', async () => {
    const ws = await openWebSocket(kc, '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns/virtualmachines/vm/console', { protocols: ['plain.keyvirt.io'], timeoutMs: 5000 });
    assert.equal(seen.auth, 'Bearer secret-token');
    assert.equal(seen.protocol, 'plain.keyvirt.io');
    assert.equal(ws.protocol, 'plain.keyvirt.io');
    let received = '';
    ws.on('data', (chunk: Buffer) => (received += chunk.toString()));
    ws.write(Buffer.from('root\n'));
    const deadline = Date.now() + 5000;
    while (!received.includes('echo:root\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(received, 'login: echo:root\n');
    assert.equal(seen.pong, 'are-you-there');
    ws.end();
    const info = await ws.whenClosed;
    assert.equal(info.code, 1000);
    assert.equal(seen.closeCode, 1000);
  });

  void it('reads a refused upgrade as the API server Status', async () => {
    await assert.rejects(
      openWebSocket(kc, '/denied', { timeoutMs: 5000 }),
      (err: unknown) => err instanceof KubeApiError && err.statusCode === 403 && err.reason === 'Forbidden' && /cannot get virtualmachines\/console/.test(err.message),
    );
  });
});

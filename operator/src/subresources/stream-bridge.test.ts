import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { bridgeWebSocket, peerGone } from './stream-bridge.ts';

void test('a peer is gone only after the timeout without a word', () => {
  for (const [last, now, gone] of [[0, 45_000, false], [0, 45_001, true], [10_000, 50_000, false]] as const) {
    assert.equal(peerGone(last, now, 45_000), gone, `${last} → ${now}`);
  }
});

/** A websocket pair over loopback; the server side is bridged to `launcher`. */
async function session(launcher: PassThrough, pingIntervalMs: number, peerTimeoutMs: number): Promise<{ client: WebSocket; ended: Promise<string>; close: () => void }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const ended = new Promise<string>((resolve) => {
    wss.once('connection', (ws) => {
      void bridgeWebSocket(ws, launcher, pino({ level: 'silent' }), { pingIntervalMs, peerTimeoutMs, now: () => performance.now() }).then(resolve);
    });
  });
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  await new Promise((resolve) => client.once('open', resolve));
  return { client, ended, close: () => wss.close() };
}

void test('an idle session that answers pings stays open; the launcher ending closes it with 1000', async () => {
  const launcher = new PassThrough();
  const s = await session(launcher, 20, 100);
  let pings = 0;
  s.client.on('ping', () => pings++);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(s.client.readyState, WebSocket.OPEN, 'open after 4 peer timeouts of idleness');
  assert.ok(pings >= 5, `pinged ${pings} times`);
  const code = new Promise<number>((resolve) => s.client.once('close', (c) => resolve(c)));
  launcher.end();
  assert.equal(await code, 1000);
  assert.equal(await s.ended, 'launcher');
  s.close();
});

void test('bytes pass both ways as binary frames', async () => {
  const launcher = new PassThrough();
  const s = await session(launcher, 1000, 5000);
  const got = new Promise<{ data: Buffer; binary: boolean }>((resolve) => s.client.once('message', (data: Buffer, binary: boolean) => resolve({ data, binary })));
  launcher.write(Buffer.from([0, 1, 2, 255]));
  const frame = await got;
  assert.equal(frame.binary, true);
  assert.deepEqual([...frame.data], [0, 1, 2, 255]);
  s.client.close();
  assert.equal(await s.ended, 'user');
  s.close();
});

void test('a peer that stops answering is dropped after the timeout', async () => {
  const launcher = new PassThrough();
  const s = await session(launcher, 20, 100);
  // Stop reading the socket: pings are neither seen nor answered.
  const raw = (s.client as unknown as { _socket: import('node:net').Socket })._socket;
  raw.pause();
  assert.equal(await s.ended, 'peer-timeout');
  assert.equal(launcher.destroyed, true);
  s.client.terminate();
  s.close();
});

// The console/VNC upgrade routes against a real unix socket standing in for QEMU's
// chardev: authentication before routing, one session per stream, bytes both ways,
// the session slot freed when either side ends, refusals as HTTP answers.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { Duplex } from 'node:stream';
import { pino } from 'pino';
import { LauncherHttpError, openLauncherStream } from '../api/index.ts';
import { bearerTokenCheck } from './auth.ts';
import { registerConsoleStreams } from './console-streams.ts';
import { ApiServer } from './server.ts';

const TOKEN = 'a-long-enough-test-token-0123456789';

interface Fixture {
  baseUrl: string;
  guestSide: Promise<net.Socket>[];
  nextGuest: () => Promise<net.Socket>;
  active: ReadonlySet<string>;
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }, withVnc = true): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-streams-'));
  const serialSocket = path.join(dir, 'serial.sock');
  const accepted: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  const qemu = net.createServer((s) => {
    const w = waiting.shift();
    if (w !== undefined) w(s);
    else accepted.push(s);
  });
  await new Promise<void>((resolve) => qemu.listen(serialSocket, resolve));
  const server = new ApiServer(pino({ level: 'silent' }), bearerTokenCheck(TOKEN));
  const active = registerConsoleStreams(server, { serialSocket, vncSocket: withVnc ? path.join(dir, 'vnc.sock') : undefined });
  const addr = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close();
    for (const s of accepted) s.destroy();
    qemu.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    baseUrl: `http://127.0.0.1:${addr.port}`,
    guestSide: [],
    nextGuest: () => {
      const ready = accepted.shift();
      return ready !== undefined ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
    active,
  };
}

function read(stream: Duplex, want: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const on = (chunk: Buffer): void => {
      got += chunk.toString('utf8');
      if (got.includes(want)) {
        stream.off('data', on);
        resolve(got);
      }
    };
    stream.on('data', on);
  });
}

async function refusal(p: Promise<Duplex>): Promise<{ status: number; message: string }> {
  try {
    const s = await p;
    s.destroy();
  } catch (err) {
    assert.ok(err instanceof LauncherHttpError, String(err));
    return { status: err.status, message: err.body?.error.message ?? '' };
  }
  assert.fail('the upgrade was not refused');
}

void test('the console carries bytes both ways and frees its slot when the client leaves', async (t) => {
  const f = await fixture(t);
  const client = await openLauncherStream({ baseUrl: f.baseUrl, token: TOKEN, kind: 'console' });
  const guest = await f.nextGuest();
  client.write('echo hi\n');
  assert.match(await read(guest, 'echo hi'), /echo hi/);
  guest.write('hi\r\n# ');
  assert.match(await read(client, '# '), /hi/);
  assert.deepEqual([...f.active], ['console']);
  client.destroy();
  await new Promise((resolve) => guest.once('close', resolve));
  for (let i = 0; i < 50 && f.active.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.active.size, 0);
  const again = await openLauncherStream({ baseUrl: f.baseUrl, token: TOKEN, kind: 'console' });
  again.destroy();
});

void test('a second console session is refused with 409 while the first is open', async (t) => {
  const f = await fixture(t);
  const first = await openLauncherStream({ baseUrl: f.baseUrl, token: TOKEN, kind: 'console' });
  const r = await refusal(openLauncherStream({ baseUrl: f.baseUrl, token: TOKEN, kind: 'console' }));
  assert.equal(r.status, 409);
  assert.match(r.message, /in use/);
  first.destroy();
});

void test('the guest side ending closes the client', async (t) => {
  const f = await fixture(t);
  const client = await openLauncherStream({ baseUrl: f.baseUrl, token: TOKEN, kind: 'console' });
  const guest = await f.nextGuest();
  const closed = new Promise((resolve) => client.once('close', resolve));
  guest.end();
  await closed;
});

const refusals: { name: string; token: string; kind: 'console' | 'vnc'; vnc: boolean; status: number; message: RegExp }[] = [
  { name: 'no token', token: 'wrong-token-0123456789', kind: 'console', vnc: true, status: 401, message: /bearer token/ },
  { name: 'VNC socket absent (QEMU not running)', token: TOKEN, kind: 'vnc', vnc: true, status: 409, message: /not running/ },
  { name: 'VM without a display', token: TOKEN, kind: 'vnc', vnc: false, status: 404, message: /no display/ },
];
for (const r of refusals) {
  void test(`refused: ${r.name} → ${r.status}`, async (t) => {
    const f = await fixture(t, r.vnc);
    const got = await refusal(openLauncherStream({ baseUrl: f.baseUrl, token: r.token, kind: r.kind }));
    assert.equal(got.status, r.status);
    assert.match(got.message, r.message);
  });
}

async function rawExchange(baseUrl: string, request: string): Promise<string> {
  const url = new URL(baseUrl);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.write(request);
  let got = '';
  for await (const chunk of socket as AsyncIterable<Buffer>) got += chunk.toString('utf8');
  return got;
}

const rawCases: { name: string; request: (token: string) => string; status: RegExp }[] = [
  { name: 'unknown upgrade path without token is 401, not 404', request: () => 'GET /v1/secret HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: keyvirt-stream\r\n\r\n', status: /^HTTP\/1\.1 401 / },
  { name: 'another protocol', request: (tk) => `GET /v1/console HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tk}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, status: /^HTTP\/1\.1 400 / },
  { name: 'POST upgrade', request: (tk) => `POST /v1/console HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tk}\r\nConnection: Upgrade\r\nUpgrade: keyvirt-stream\r\n\r\n`, status: /^HTTP\/1\.1 405 / },
  { name: 'the historic //a:99999/ target is answered, not thrown', request: (tk) => `GET //a:99999/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tk}\r\nConnection: Upgrade\r\nUpgrade: keyvirt-stream\r\n\r\n`, status: /^HTTP\/1\.1 404 / },
];
for (const c of rawCases) {
  void test(`raw upgrade: ${c.name}`, async (t) => {
    const f = await fixture(t);
    const answer = await rawExchange(f.baseUrl, c.request(TOKEN));
    assert.match(answer, c.status);
    assert.equal(f.active.size, 0);
  });
}

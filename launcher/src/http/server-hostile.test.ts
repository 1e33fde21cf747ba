// The API server against hostile clients on raw sockets: malformed request targets and
// encodings, oversized headers, routes probed without a token, slow clients and
// connection floods. The process must survive every one and keep answering.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { bearerTokenCheck } from './auth.ts';
import { ApiServer, type ServerLimits } from './server.ts';

const TOKEN = 'a-long-enough-test-token-0123456789';

async function serve(t: { after: (fn: () => Promise<void>) => void }, limits: Partial<ServerLimits> = {}): Promise<{ server: ApiServer; port: number }> {
  const server = new ApiServer(pino({ level: 'silent' }), bearerTokenCheck(TOKEN), limits);
  server.route('GET', '/healthz', () => Promise.resolve({ status: 200, body: { ok: true } }), { public: true });
  server.route('GET', '/v1/things/:name', ({ params }) => Promise.resolve({ status: 200, body: { name: params.name } }));
  const addr = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  return { server, port: addr.port };
}

/** Sends `bytes` and collects what comes back until the server closes or `waitMs` passes. */
async function exchange(port: number, bytes: string | Buffer, waitMs = 2000): Promise<{ text: string; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  let closed = false;
  socket.on('error', () => undefined);
  const done = new Promise<void>((resolve) => {
    socket.once('close', () => ((closed = true), resolve()));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (responseComplete(text)) resolve();
    });
  });
  socket.write(bytes);
  await Promise.race([done, sleep(waitMs)]);
  socket.destroy();
  return { text, closed };
}

/** Whether `text` holds a whole response with a content-length body. */
function responseComplete(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  const length = /\r\ncontent-length: (\d+)/i.exec(text);
  return end >= 0 && length !== null && text.length - end - 4 >= Number(length[1]);
}

function statusOf(text: string): number | undefined {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return m === null ? undefined : Number(m[1]);
}

async function healthy(port: number): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  assert.equal(res.status, 200);
  const authed = await fetch(`http://127.0.0.1:${port}/v1/things/x`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.deepEqual(await authed.json(), { name: 'x' });
}

const auth = `Authorization: Bearer ${TOKEN}\r\n`;

const cases: { name: string; request: string; status: number }[] = [
  { name: 'a target that reads as an authority (used to end the process)', request: 'GET //a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n', status: 401 },
  { name: 'the same target with the token', request: `GET //a:99999/ HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 404 },
  { name: 'bad percent-encoding', request: `GET /v1/things/%E0%A4%A HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 400 },
  { name: 'a lone percent sign', request: `GET /v1/things/% HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 400 },
  { name: 'percent-encoded invalid UTF-8', request: `GET /v1/things/%C3%28 HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 400 },
  { name: 'absolute form', request: `GET http://launcher/v1/things/a HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 400 },
  { name: 'asterisk form', request: `OPTIONS * HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 400 },
  { name: 'an unknown path without the token', request: 'GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n', status: 401 },
  { name: 'a known path with a wrong method without the token', request: 'DELETE /v1/things/a HTTP/1.1\r\nHost: x\r\n\r\n', status: 401 },
  { name: 'the health check with a wrong method without the token', request: 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', status: 401 },
  { name: 'an unknown path with the token', request: `GET /v1/nothing HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 404 },
  { name: 'a wrong method with the token', request: `DELETE /v1/things/a HTTP/1.1\r\nHost: x\r\n${auth}\r\n`, status: 405 },
  { name: 'no Host header', request: 'GET /healthz HTTP/1.1\r\n\r\n', status: 400 },
  { name: 'a header block over 16 KiB', request: `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431 },
  { name: 'a control byte in the request line', request: 'GET /heal\x01thz HTTP/1.1\r\nHost: x\r\n\r\n', status: 400 },
  { name: 'an unknown HTTP version', request: 'GET /healthz HTTP/7.3\r\nHost: x\r\n\r\n', status: 400 },
  { name: 'content-length and chunked together', request: 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc', status: 400 },
  { name: 'a broken chunk', request: `POST /v1/things/a HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, status: 405 },
  { name: 'Expect: 100-continue without the token gets no 100', request: 'POST /v1/things/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n', status: 401 },
  { name: 'a token of invalid bytes', request: 'GET /v1/things/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n', status: 401 },
];

for (const c of cases) {
  void test(`answers ${c.status} and lives on: ${c.name}`, async (t) => {
    const { port } = await serve(t);
    const { text } = await exchange(port, Buffer.from(c.request, 'latin1'));
    assert.equal(statusOf(text), c.status, text.slice(0, 200));
    if (c.status === 401) assert.doesNotMatch(text, /things|healthz/, 'an answer without the token names no route');
    await healthy(port);
  });
}

void test('a client that sends its headers too slowly is cut off at the headers timeout', async (t) => {
  const { port } = await serve(t, { headersTimeoutMs: 600, requestTimeoutMs: 1500 });
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  const started = Date.now();
  socket.write('GET /healthz HTTP/1.1\r\n');
  const drip = setInterval(() => socket.write(`X-Slow-${Date.now()}: 1\r\n`), 100);
  const at = await Promise.race([closed, sleep(5000, -1)]);
  clearInterval(drip);
  socket.destroy();
  assert.ok(at > 0, 'the slow client was never cut off');
  assert.ok(at - started < 3000, `cut off after ${at - started} ms`);
  await healthy(port);
});

void test('a client that never sends a byte is cut off', async (t) => {
  const { port } = await serve(t, { headersTimeoutMs: 600, requestTimeoutMs: 1500 });
  const { closed } = await exchange(port, Buffer.alloc(0), 5000);
  assert.ok(closed, 'an idle connection was held open');
});

void test('a body that trickles in is cut off at the request timeout', async (t) => {
  const { port } = await serve(t, { headersTimeoutMs: 600, requestTimeoutMs: 1200 });
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  const started = Date.now();
  socket.write(`GET /v1/things/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n${auth}\r\n`);
  const drip = setInterval(() => socket.write('x'), 100);
  const at = await Promise.race([closed, sleep(6000, -1)]);
  clearInterval(drip);
  socket.destroy();
  assert.ok(at > 0 && at - started < 4000, `cut off after ${at < 0 ? 'never' : `${at - started} ms`}`);
  await healthy(port);
});

void test('a connection flood from one peer is capped and the API still answers once it ends', async (t) => {
  const { server, port } = await serve(t, { connections: { total: 40, perPeer: 20 } });
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 60; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    sockets.push(s);
  }
  await Promise.all(sockets.map((s) => new Promise((resolve) => (s.once('connect', resolve), s.once('close', resolve)))));
  await sleep(200);
  assert.equal(server.refusedConnections, 40, 'every connection over the per-peer cap is refused');
  for (const s of sockets) s.destroy();
  await sleep(200);
  await healthy(port);
});

void test('thousands of random byte strings leave the server answering', async (t) => {
  const { port } = await serve(t);
  let seed = 0x9e3779b9;
  const random = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0), seed / 2 ** 32);
  const batches = 20;
  for (let b = 0; b < batches; b++) {
    await Promise.all(
      Array.from({ length: 100 }, () => {
        const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
        const prefix = random() < 0.5 ? Buffer.from('GET /') : Buffer.alloc(0);
        return exchange(port, Buffer.concat([prefix, bytes]), 300);
      }),
    );
  }
  await healthy(port);
});

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { LauncherClient, LauncherHttpError, LauncherProtocolError, LauncherUnreachableError, LauncherVersionError } from './client.ts';
import type { Status } from './status.ts';

const status: Status = {
  phase: 'Running',
  reason: 'QemuRunning',
  accelerator: 'tcg',
  qemu: { pid: 42, runState: 'running' },
  guestAgent: { connected: false },
  guest: { interfaces: [] },
  disks: [],
  timestamps: { launcherStartedAt: '2026-01-01T00:00:00.000Z', phaseTransitionAt: '2026-01-01T00:00:01.000Z' },
};

const info = (versions: string[]): unknown => ({
  apiVersions: versions,
  launcherVersion: '0.1.0',
  accelerator: 'tcg',
  acceleratorReason: 'test',
  mode: 'run',
  vm: { name: 'a', namespace: 'b', uid: 'c' },
});

async function fakeLauncher(
  t: { after: (fn: () => Promise<void>) => void },
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

void test('negotiates once, sends the token, parses responses and streams events', async (t) => {
  const seen: string[] = [];
  const url = await fakeLauncher(t, (req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''} ${req.headers.authorization ?? ''}`);
    if (req.url === '/v1/info') return json(res, 200, info(['v1']));
    if (req.url === '/v1/status') return json(res, 200, status);
    if (req.url === '/v1/events') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify({ type: 'status', seq: 0, time: '2026-01-01T00:00:02.000Z', status })}\n\n`);
      res.end(`${JSON.stringify({ type: 'qemu', seq: 1, time: '2026-01-01T00:00:03.000Z', event: 'STOP' })}\n`);
      return undefined;
    }
    return json(res, 404, { error: { code: 'NotFound', message: 'no' } });
  });
  const client = new LauncherClient({ baseUrl: `${url}/`, token: 'tok' });
  assert.equal((await client.status()).phase, 'Running');
  assert.equal((await client.status()).qemu.pid, 42);
  const events = [];
  for await (const e of client.events()) events.push(e.type);
  assert.deepEqual(events, ['status', 'qemu']);
  assert.deepEqual(seen, ['GET /v1/info Bearer tok', 'GET /v1/status Bearer tok', 'GET /v1/status Bearer tok', 'GET /v1/events Bearer tok']);
});

void test('a launcher without a known API version is a LauncherVersionError', async (t) => {
  const url = await fakeLauncher(t, (_req, res) => json(res, 200, info(['v9'])));
  await assert.rejects(new LauncherClient({ baseUrl: url, token: 't' }).status(), LauncherVersionError);
});

void test('error bodies become LauncherHttpError with the issues', async (t) => {
  const url = await fakeLauncher(t, (req, res) => {
    if (req.url === '/v1/info') return json(res, 200, info(['v1']));
    return json(res, 400, { error: { code: 'BadRequest', message: 'bad', issues: [{ path: 'gracePeriodSeconds', message: 'expected number' }] } });
  });
  await assert.rejects(new LauncherClient({ baseUrl: url, token: 't' }).action('shutdown', { gracePeriodSeconds: 5 }), (err: unknown) => {
    assert.ok(err instanceof LauncherHttpError);
    assert.equal(err.status, 400);
    assert.equal(err.body?.error.issues?.[0]?.path, 'gracePeriodSeconds');
    return true;
  });
});

void test('a response of the wrong shape is a LauncherProtocolError', async (t) => {
  const url = await fakeLauncher(t, (req, res) => (req.url === '/v1/info' ? json(res, 200, info(['v1'])) : json(res, 200, { phase: 'Dancing' })));
  await assert.rejects(new LauncherClient({ baseUrl: url, token: 't' }).status(), LauncherProtocolError);
});

void test('a launcher that is not there is a LauncherUnreachableError', async () => {
  await assert.rejects(new LauncherClient({ baseUrl: 'http://127.0.0.1:1', token: 't', timeoutMs: 2000 }).info(), LauncherUnreachableError);
});

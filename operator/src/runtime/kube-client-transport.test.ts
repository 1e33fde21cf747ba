import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Agent } from 'undici';
import { isGone, isNotFound, KubeApiError, KubeClient, KubeTimeoutError, KubeTransportError } from './kube-client.ts';

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

type Route = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** A local HTTP server whose answers each test sets by path; it records what it was sent. */
function fixture(): { url: () => string; client: () => KubeClient; route: (path: string, r: Route) => void; seen: Seen[]; start: () => Promise<void>; stop: () => Promise<void> } {
  const routes = new Map<string, Route>();
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', contentType: req.headers['content-type'], body });
      const r = routes.get(new URL(req.url ?? '/', 'http://x').pathname);
      if (r === undefined) res.writeHead(500).end('no route');
      else r(req, res, body);
    });
  });
  const dispatcher = new Agent();
  let port = 0;
  return {
    url: () => `http://127.0.0.1:${port}`,
    client: () => new KubeClient({ server: `http://127.0.0.1:${port}`, headers: () => Promise.resolve({ authorization: 'Bearer t' }), dispatcher }, 'test-manager', { requestTimeoutMs: 300 }),
    route: (path, r) => routes.set(path, r),
    seen,
    start: async () => {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const address = server.address();
      port = typeof address === 'object' && address !== null ? address.port : 0;
    },
    stop: async () => {
      server.closeAllConnections();
      server.close();
      await dispatcher.close();
    },
  };
}

const json = (code: number, value: unknown): Route => (_req, res) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(value));

describe('KubeClient requests against an HTTP server', () => {
  const f = fixture();
  before(f.start);
  after(f.stop);

  it('returns the parsed answer and sends bodies with their content types and the field manager', async () => {
    f.route('/api/v1/namespaces/ns/pods', json(201, { kind: 'Pod', metadata: { name: 'p' } }));
    f.route('/api/v1/namespaces/ns/pods/p', json(200, { kind: 'Pod', metadata: { name: 'p', labels: { a: 'é' } } }));
    const c = f.client();
    assert.deepEqual(await c.create('/api/v1/namespaces/ns/pods', { metadata: { name: 'p' } }), { kind: 'Pod', metadata: { name: 'p' } });
    assert.deepEqual(await c.patch('/api/v1/namespaces/ns/pods/p', { metadata: { labels: { a: 'é' } } }, 'merge'), {
      kind: 'Pod',
      metadata: { name: 'p', labels: { a: 'é' } },
    });
    await c.patch('/api/v1/namespaces/ns/pods/p', [{ op: 'remove', path: '/x' }], 'json');
    const [post, merge, jsonPatch] = f.seen.slice(-3);
    assert.equal(post?.method, 'POST');
    assert.equal(post?.url, '/api/v1/namespaces/ns/pods?fieldManager=test-manager');
    assert.equal(post?.contentType, 'application/json');
    assert.deepEqual(JSON.parse(post?.body ?? ''), { metadata: { name: 'p' } });
    assert.equal(merge?.contentType, 'application/merge-patch+json');
    assert.deepEqual(JSON.parse(merge?.body ?? ''), { metadata: { labels: { a: 'é' } } });
    assert.equal(jsonPatch?.contentType, 'application/json-patch+json');
  });

  it('turns a Status answer into KubeApiError with its code, reason and message', async () => {
    f.route('/api/v1/namespaces/ns/secrets/gone', json(404, { kind: 'Status', reason: 'NotFound', message: 'secrets "gone" not found', code: 404 }));
    const err = await f.client().get('/api/v1/namespaces/ns/secrets/gone').then(
      () => assert.fail('answered'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KubeApiError);
    assert.ok(isNotFound(err));
    assert.equal(err.reason, 'NotFound');
    assert.match(err.message, /GET \/api\/v1\/namespaces\/ns\/secrets\/gone: 404 NotFound: secrets "gone" not found/);
  });

  it('keeps a proxy’s plain-text error as the message', async () => {
    f.route('/apis/subresources.keyvirt.io/v1/x', (_req, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('service unavailable\n'));
    await assert.rejects(f.client().get('/apis/subresources.keyvirt.io/v1/x'), (e: unknown) => e instanceof KubeApiError && e.statusCode === 503 && e.message.endsWith(': 503 Unknown: service unavailable'));
  });

  it('fails a request without an answer at its deadline with KubeTimeoutError', async () => {
    f.route('/api/v1/stalled', () => undefined);
    const start = performance.now();
    await assert.rejects(f.client().get('/api/v1/stalled'), KubeTimeoutError);
    const took = performance.now() - start;
    assert.ok(took >= 290 && took < 3_000, `failed after ${took} ms`);
  });

  it('fails at the deadline when the answer’s body stalls', async () => {
    f.route('/api/v1/half', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"kind":');
    });
    await assert.rejects(f.client().get('/api/v1/half'), KubeTimeoutError);
  });

  it('a caller’s abort is a transport error, not a timeout', async () => {
    f.route('/api/v1/slow', () => undefined);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 20);
    await assert.rejects(f.client().get('/api/v1/slow', abort.signal), (e: unknown) => e instanceof KubeTransportError && !(e instanceof KubeTimeoutError));
  });
});

describe('KubeClient watches against an HTTP server', () => {
  const f = fixture();
  before(f.start);
  after(f.stop);

  it('delivers each line as it completes, across chunks and split characters; bad lines apart', async () => {
    const line = (name: string): string => JSON.stringify({ type: 'ADDED', object: { metadata: { name } } });
    const bytes = Buffer.from(`${line('a')}\n\n${line('b-é')}\nnot json\n${line('c')}\n`);
    const split = bytes.indexOf(Buffer.from('é')) + 1; // inside the two bytes of é
    f.route('/api/v1/pods', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(bytes.subarray(0, 5));
      setTimeout(() => res.write(bytes.subarray(5, split)), 10);
      setTimeout(() => res.end(bytes.subarray(split)), 20);
    });
    const events: unknown[] = [];
    const bad: string[] = [];
    const stream = await f.client().watch('/api/v1/pods', { resourceVersion: '5' }, { onEvent: (e) => events.push(e), onBadLine: (l) => bad.push(l) }, new AbortController().signal);
    await stream.done;
    assert.deepEqual(
      events.map((e) => JSON.stringify(e)),
      [line('a'), line('b-é'), line('c')],
    );
    assert.deepEqual(bad, ['not json']);
    assert.match(f.seen.at(-1)?.url ?? '', /^\/api\/v1\/pods\?resourceVersion=5&watch=true$/);
  });

  it('an expired resource version is KubeApiError 410', async () => {
    f.route('/api/v1/old', json(410, { kind: 'Status', reason: 'Expired', message: 'too old resource version', code: 410 }));
    await assert.rejects(
      f.client().watch('/api/v1/old', {}, { onEvent: () => undefined, onBadLine: () => undefined }, new AbortController().signal),
      (e: unknown) => isGone(e) && e instanceof KubeApiError && e.reason === 'Expired',
    );
  });

  it('a stream cut by the server rejects done with KubeTransportError; an abort ends it quietly', async () => {
    f.route('/api/v1/cut', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED","object":{}}\n{"type":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const seen: unknown[] = [];
    const cut = await f.client().watch('/api/v1/cut', {}, { onEvent: (e) => seen.push(e), onBadLine: () => undefined }, new AbortController().signal);
    await assert.rejects(cut.done, KubeTransportError);
    assert.equal(seen.length, 1);

    f.route('/api/v1/open', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED","object":{}}\n');
    });
    const abort = new AbortController();
    const open = await f.client().watch('/api/v1/open', {}, { onEvent: () => abort.abort(), onBadLine: () => undefined }, abort.signal);
    await open.done;
    assert.ok(abort.signal.aborted);
  });
});

describe('KubeClient.close against an HTTP server', () => {
  const f = fixture();
  before(f.start);
  after(() => f.stop().catch(() => undefined));

  it('waits for the request under way, stops waiting after the grace period, and refuses new ones', async () => {
    f.route('/api/v1/quick', json(200, { kind: 'Status' }));
    let answerSlow: () => void = () => undefined;
    f.route('/api/v1/slow-answer', (_req, res) => (answerSlow = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}')));
    f.route('/api/v1/never', () => undefined);
    const c = new KubeClient(
      { server: f.url(), headers: () => Promise.resolve({}), dispatcher: new Agent() },
      'test-manager',
      { requestTimeoutMs: 60_000 },
    );
    assert.deepEqual(await c.get('/api/v1/quick'), { kind: 'Status' });
    // A request that ends within the grace period ends with its answer.
    const slow = c.get('/api/v1/slow-answer');
    await waitFor(() => f.seen.some((s) => s.url === '/api/v1/slow-answer'));
    const closing = c.close(30_000);
    answerSlow();
    assert.deepEqual(await slow, {});
    await closing;
    await assert.rejects(c.get('/api/v1/quick'), KubeTransportError, 'no request after the close');

    // One that never ends does not hold the close past the grace period.
    const c2 = new KubeClient({ server: f.url(), headers: () => Promise.resolve({}), dispatcher: new Agent() }, 'test-manager', { requestTimeoutMs: 60_000 });
    const abort = new AbortController();
    const never = c2.get('/api/v1/never', abort.signal);
    never.catch(() => undefined);
    await waitFor(() => f.seen.some((s) => s.url === '/api/v1/never'));
    const closingLate = c2.close(100);
    assert.equal(await Promise.race([closingLate.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still closing'), 20_000))]), 'closed');
    abort.abort();
    await assert.rejects(never, KubeTransportError);
  });
});

async function waitFor(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 5));
}

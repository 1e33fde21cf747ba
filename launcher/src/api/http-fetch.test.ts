import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bundleLauncherScript, LAUNCHER_NODE_FLAGS } from '../../../hack/launcher-build/build-launcher.ts';
import { httpFetch } from './http-fetch.ts';
import { LauncherHttpError, LauncherTransport, LauncherUnreachableError } from './transport.ts';
import { z } from 'zod';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

describe('httpFetch (launcher-to-launcher calls over node:http)', () => {
  let server: http.Server;
  let base: string;
  const seen: { method: string; auth: string | undefined; body: string }[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', auth: req.headers.authorization, body });
        if (req.url === '/ok') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echo: body === '' ? null : (JSON.parse(body) as unknown) }));
        } else if (req.url === '/stream') {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.write('{"n":1}\n{"n"');
          setTimeout(() => res.end(':2}\n'), 20);
        } else if (req.url === '/slow') {
          setTimeout(() => res.writeHead(200).end('{}'), 2000);
        } else {
          res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'Conflict', message: 'busy' } }));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends method, headers and body, and returns status, headers and body', async () => {
    const t = new LauncherTransport({ baseUrl: base, token: 'tok', fetch: httpFetch });
    const answer = await t.call('POST', '/ok', { a: 1 }, z.object({ echo: z.object({ a: z.number() }) }));
    assert.deepEqual(answer, { echo: { a: 1 } });
    assert.deepEqual(seen.at(-1), { method: 'POST', auth: 'Bearer tok', body: '{"a":1}' });
  });

  it('streams newline-delimited JSON split across chunks', async () => {
    const t = new LauncherTransport({ baseUrl: base, token: 'tok', fetch: httpFetch });
    const got: unknown[] = [];
    for await (const item of t.stream('/stream', z.object({ n: z.number() }), 'test')) got.push(item);
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
  });

  it('reports error statuses with their body, refused connections and timeouts as the transport does with fetch', async () => {
    const t = new LauncherTransport({ baseUrl: base, token: 'tok', fetch: httpFetch, timeoutMs: 300 });
    await assert.rejects(t.call('GET', '/conflict', undefined, z.unknown()), (err: unknown) => err instanceof LauncherHttpError && err.status === 409 && err.body?.error.code === 'Conflict');
    await assert.rejects(t.call('GET', '/slow', undefined, z.unknown()), LauncherUnreachableError);
    const closed = new LauncherTransport({ baseUrl: 'http://127.0.0.1:1', token: 'tok', fetch: httpFetch });
    await assert.rejects(closed.call('GET', '/ok', undefined, z.unknown()), LauncherUnreachableError);
  });

  it('refuses what launcher URLs never are', async () => {
    await assert.rejects(httpFetch('https://127.0.0.1/'), /https: URLs are not served/);
  });

  it('works as the launcher is built, under lite mode, where the global fetch cannot (no WebAssembly)', { timeout: 120_000 }, () => {
    // A probe bundled with the launcher's own build options (hack/launcher-build), run with its flags.
    const dir = mkdtempSync(path.join(tmpdir(), 'kv-http-fetch-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const apiDir = path.join(repoRoot, 'launcher', 'src', 'api');
    const probe = path.join(dir, 'probe.ts');
    writeFileSync(
      probe,
      [
        "import http from 'node:http';",
        `import { httpFetch } from ${JSON.stringify(path.join(apiDir, 'http-fetch.ts'))};`,
        `import { LauncherClient } from ${JSON.stringify(path.join(apiDir, 'client.ts'))};`,
        'async function main(): Promise<void> {',
        "  const server = http.createServer((req, res) => res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'Unauthorized', message: req.headers.authorization ?? '' } })));",
        "  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));",
        '  const address = server.address();',
        "  const baseUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;",
        '  const outcome = async (fetch?: typeof httpFetch): Promise<string> => {',
        '    try {',
        '      await new LauncherClient({ baseUrl, token: "t", timeoutMs: 5000, ...(fetch ? { fetch } : {}) }).info();',
        '      return "answered";',
        '    } catch (err) {',
        '      const e = err as Error & { cause?: { cause?: Error } };',
        '      return `${e.name}: ${e.message} ${e.cause?.cause?.message ?? ""}`;',
        '    }',
        '  };',
        '  console.log(JSON.stringify({ httpFetch: await outcome(httpFetch), globalFetch: await outcome() }));',
        '  server.close();',
        '}',
        'void main();',
        '',
      ].join('\n'),
    );
    const script = path.join(dir, 'probe.cjs');
    bundleLauncherScript(repoRoot, script, probe);
    const out = execFileSync(process.execPath, [...LAUNCHER_NODE_FLAGS, script], { encoding: 'utf8', timeout: 60_000 });
    const result = JSON.parse(out) as { httpFetch: string; globalFetch: string };
    assert.match(result.httpFetch, /^LauncherHttpError: GET \/v1\/info: HTTP 401 Unauthorized: Bearer t/);
    // Why the launcher does not use the global fetch for these calls:
    assert.match(result.globalFetch, /WebAssembly is not defined/);
  });
});


import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { bearerTokenCheck } from './auth.ts';
import { HttpError } from './errors.ts';
import { ApiServer } from './server.ts';

const TOKEN = 'a-long-enough-test-token-0123456789';

async function serve(t: { after: (fn: () => Promise<void>) => void }): Promise<{ url: string; calls: unknown[] }> {
  const server = new ApiServer(pino({ level: 'silent' }), bearerTokenCheck(TOKEN));
  const calls: unknown[] = [];
  server.route('GET', '/healthz', () => Promise.resolve({ status: 200, body: { ok: true } }), { public: true });
  server.route('POST', '/v1/things/:name', async ({ params, body }) => {
    const parsed = await body(z.strictObject({ count: z.int().min(1), nested: z.object({ flag: z.boolean() }).optional() }));
    calls.push({ name: params.name, ...parsed });
    return { status: 202, body: { ok: true } };
  });
  server.route('GET', '/v1/conflict', () => Promise.reject(new HttpError(409, 'Conflict', 'not now')));
  server.route('GET', '/v1/boom', () => Promise.reject(new Error('secret internals')));
  const addr = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  return { url: `http://127.0.0.1:${addr.port}`, calls };
}

const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

void test('routes with params get a validated body', async (t) => {
  const { url, calls } = await serve(t);
  const res = await fetch(`${url}/v1/things/abc`, { method: 'POST', headers: auth, body: '{"count": 2}' });
  assert.equal(res.status, 202);
  assert.deepEqual(calls, [{ name: 'abc', count: 2 }]);
});

const rejections: { name: string; path: string; init: RequestInit; status: number; code: string; issuePaths?: string[] }[] = [
  { name: 'no token', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1}', headers: { 'content-type': 'application/json' } }, status: 401, code: 'Unauthorized' },
  { name: 'wrong token', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1}', headers: { ...auth, authorization: 'Bearer nope' } }, status: 401, code: 'Unauthorized' },
  { name: 'wrong scheme', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1}', headers: { ...auth, authorization: `Basic ${TOKEN}` } }, status: 401, code: 'Unauthorized' },
  { name: 'wrong field type', path: '/v1/things/a', init: { method: 'POST', body: '{"count":"x"}', headers: auth }, status: 400, code: 'BadRequest', issuePaths: ['count'] },
  { name: 'nested field', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1,"nested":{"flag":3}}', headers: auth }, status: 400, code: 'BadRequest', issuePaths: ['nested.flag'] },
  { name: 'unknown field', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1,"extra":1}', headers: auth }, status: 400, code: 'BadRequest', issuePaths: ['(body)'] },
  { name: 'not JSON', path: '/v1/things/a', init: { method: 'POST', body: '{', headers: auth }, status: 400, code: 'BadRequest' },
  { name: 'not a JSON content type', path: '/v1/things/a', init: { method: 'POST', body: '{"count":1}', headers: { ...auth, 'content-type': 'text/plain' } }, status: 400, code: 'BadRequest' },
  { name: 'too large', path: '/v1/things/a', init: { method: 'POST', body: `{"count":1,"pad":"${'x'.repeat(70_000)}"}`, headers: auth }, status: 413, code: 'PayloadTooLarge' },
  { name: 'unknown path', path: '/v1/nothing', init: { headers: auth }, status: 404, code: 'NotFound' },
  { name: 'wrong method', path: '/v1/things/a', init: { method: 'GET', headers: auth }, status: 405, code: 'MethodNotAllowed' },
  { name: 'handler conflict', path: '/v1/conflict', init: { headers: auth }, status: 409, code: 'Conflict' },
  { name: 'handler crash', path: '/v1/boom', init: { headers: auth }, status: 500, code: 'Internal' },
];

for (const r of rejections) {
  void test(`rejects: ${r.name} → ${r.status}`, async (t) => {
    const { url, calls } = await serve(t);
    const res = await fetch(`${url}${r.path}`, r.init);
    assert.equal(res.status, r.status);
    const body = (await res.json()) as { error: { code: string; message: string; issues?: { path: string }[] } };
    assert.equal(body.error.code, r.code);
    assert.doesNotMatch(body.error.message, /secret internals/);
    if (r.issuePaths !== undefined) assert.deepEqual(body.error.issues?.map((i) => i.path), r.issuePaths);
    assert.deepEqual(calls, []);
  });
}

void test('the health check needs no token', async (t) => {
  const { url } = await serve(t);
  const res = await fetch(`${url}/healthz`);
  assert.equal(res.status, 200);
});

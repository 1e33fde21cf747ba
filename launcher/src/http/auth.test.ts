import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { sha256 } from '@noble/hashes/sha2.js';
import { bearerTokenCheck, digestsEqual, MAX_TOKEN_CHARS, readToken, TokenFileError } from './auth.ts';

const TOKEN = 'a'.repeat(30) + '0123456789abcdef0123456789abcdef01';

function request(authorization?: string): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  if (authorization !== undefined) req.headers.authorization = authorization;
  return req;
}

void describe('bearer token check', () => {
  it('hashes as OpenSSL does', () => {
    for (const text of ['', 'x', TOKEN, 'ü'.repeat(100), 'z'.repeat(MAX_TOKEN_CHARS)]) {
      assert.deepEqual(Buffer.from(sha256(new TextEncoder().encode(text))), createHash('sha256').update(text).digest(), text.slice(0, 10));
    }
  });

  it('accepts the token and nothing else', () => {
    const check = bearerTokenCheck(TOKEN);
    assert.equal(check(request(`Bearer ${TOKEN}`)), true);
    assert.equal(check(request(`bearer   ${TOKEN}  `)), true);
    for (const header of [undefined, '', 'Bearer', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, `Bearer ${TOKEN} extra`, `Bearer ${'x'.repeat(16_000)}`]) {
      assert.equal(check(request(header)), false, String(header).slice(0, 40));
    }
  });

  it('refuses a presented token longer than the longest one without hashing it, and a token that long to check against', () => {
    const long = 'y'.repeat(MAX_TOKEN_CHARS + 1);
    assert.throws(() => bearerTokenCheck(long), RangeError);
    const atMost = 'y'.repeat(MAX_TOKEN_CHARS);
    assert.equal(bearerTokenCheck(atMost)(request(`Bearer ${atMost}`)), true);
  });

  it('compares digests whole', () => {
    const a = sha256(new TextEncoder().encode('a'));
    const b = Uint8Array.from(a);
    assert.equal(digestsEqual(a, b), true);
    b[31] = (b[31] ?? 0) ^ 1;
    assert.equal(digestsEqual(a, b), false);
    assert.throws(() => digestsEqual(a, a.subarray(1)), RangeError);
  });
});

void describe('token file', () => {
  it('is trimmed, and refused when shorter than 16 or longer than the longest token', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kv-token-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'token');
    await writeFile(file, `  ${TOKEN}\n`);
    assert.equal(await readToken(file), TOKEN);
    await writeFile(file, 'short\n');
    await assert.rejects(readToken(file), TokenFileError);
    await writeFile(file, 'q'.repeat(MAX_TOKEN_CHARS + 1));
    await assert.rejects(readToken(file), /longer than 256 characters/);
    await assert.rejects(readToken(path.join(dir, 'missing')), TokenFileError);
  });
});

// The importer script's upload source, run for real on this machine (sh, busybox
// httpd, qemu-img): it waits on its upload port behind the job's token, refuses a
// wrong token, a GET and a body cut short (and takes a new upload after it), then
// checks, converts and renames what it received, like a download.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseImportResult } from './import-job.ts';
import { IMPORT_SCRIPT, IMPORT_UPLOAD_PATH, IMPORT_UPLOAD_USER } from './import-script.ts';
import { Readable } from 'node:stream';
import { relayUpload } from '../subresources/image-upload.ts';
import { SubresourceError } from '../subresources/errors.ts';

const TOKEN = 'a'.repeat(64);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function post(port: number, body: Buffer, auth: string | undefined, method = 'POST', query = ''): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${String(port)}${IMPORT_UPLOAD_PATH}${query}`, {
    method,
    headers: { 'content-type': 'application/octet-stream', ...(auth === undefined ? {} : { authorization: `Basic ${Buffer.from(auth).toString('base64')}` }) },
    ...(method === 'GET' ? {} : { body }),
  });
  return { status: res.status, text: await res.text() };
}

/** Headers promising `declared` bytes, then `sent` bytes, then the connection closes. */
function cutShort(port: number, declared: number, sent: Buffer, query = ''): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      const auth = Buffer.from(`${IMPORT_UPLOAD_USER}:${TOKEN}`).toString('base64');
      socket.write(`POST ${IMPORT_UPLOAD_PATH}${query} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${auth}\r\nContent-Length: ${String(declared)}\r\n\r\n`);
      socket.end(sent);
    });
    socket.on('data', () => undefined);
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${String(timeoutMs)} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

void describe('importer script: upload source', { timeout: 120_000 }, () => {
  let dir: string;
  let qcow2: Buffer;
  const jobs: number[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keyvirt-upload-'));
    const q = path.join(dir, 'src.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', q, '32M']);
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 2M', '-c', 'write -P 0xa5 20M 1M', q], { stdio: 'ignore' });
    qcow2 = await readFile(q);
  });

  after(async () => {
    // A failed case leaves its script waiting on the upload port: its process group goes (httpd included).
    for (const pid of jobs) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already ended
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (name: string, format: 'raw' | 'qcow2'): Promise<{ port: number; root: string; done: Promise<number>; resultFile: string }> => {
    const root = await mkdtemp(path.join(dir, 'domain-'));
    const port = await freePort();
    const resultFile = path.join(dir, `${name}.result`);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      KEYVIRT_DOMAIN_ROOT: root,
      KEYVIRT_RESULT_FILE: resultFile,
      KEYVIRT_PROGRESS_DIR: path.join(dir, `${name}.www`),
      KEYVIRT_PROGRESS_PORT: String(await freePort()),
      KEYVIRT_UPLOAD_DIR: path.join(dir, `${name}.upload`),
      KEYVIRT_UPLOAD_PORT: String(port),
      KEYVIRT_UPLOAD_TOKEN: TOKEN,
      KEYVIRT_OP: 'import',
      KEYVIRT_SOURCE: 'upload',
      KEYVIRT_TARGET: `vmimages/ns/${name}.${format}`,
      KEYVIRT_WORK: `vmimages/ns/.${name}.uid.import`,
      KEYVIRT_FORMAT: format,
    };
    const child = spawn('sh', ['-c', IMPORT_SCRIPT], { env, detached: true, stdio: 'ignore' });
    if (child.pid !== undefined) jobs.push(child.pid);
    const done = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
    await eventually('the upload port answers', async () => ((await post(port, Buffer.alloc(0), undefined, 'GET')).status === 401 ? true : undefined));
    return { port, root, done, resultFile };
  };

  void it('refuses strangers and broken uploads, then imports a qcow2 upload into raw with the same bytes', async () => {
    const job = await start('up', 'raw');
    // Small bodies: busybox answers from the headers and closes, which would cut a large body's write short.
    const small = qcow2.subarray(0, 512);
    assert.equal((await post(job.port, small, undefined)).status, 401, 'no token');
    assert.equal((await post(job.port, small, `${IMPORT_UPLOAD_USER}:${'b'.repeat(64)}`)).status, 401, 'a wrong token');
    assert.equal((await post(job.port, qcow2, `${IMPORT_UPLOAD_USER}:${TOKEN}`, 'GET')).status, 405, 'not a POST');
    await cutShort(job.port, qcow2.length, qcow2.subarray(0, 4096));
    const ok = await eventually('a whole upload is taken after a short one', async () => {
      const r = await post(job.port, qcow2, `${IMPORT_UPLOAD_USER}:${TOKEN}`);
      return r.status === 200 ? r : undefined;
    });
    assert.match(ok.text, new RegExp(`the upload is at byte ${String(qcow2.length)} of ${String(qcow2.length)}$`, 'm'));
    assert.equal(await job.done, 0);
    const result = parseImportResult(await readFile(job.resultFile, 'utf8'));
    assert.ok(result !== undefined && !('failed' in result), JSON.stringify(result));
    assert.equal(result.sourceFormat, 'qcow2');
    assert.equal(result.sourceBytes, qcow2.length);
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', path.join(dir, 'src.qcow2'), path.join(job.root, 'vmimages/ns/up.raw')]);
    assert.deepEqual(await readdir(path.join(job.root, 'vmimages/ns')), ['up.raw'], 'no work directory left');
  });

  void it("the operator's relay streams to it with the token; with another token the importer refuses it", async () => {
    const job = await start('relay', 'qcow2');
    const chunks = (): Readable => Readable.from((function* () { for (let at = 0; at < qcow2.length; at += 65536) yield qcow2.subarray(at, at + 65536); })());
    await assert.rejects(
      relayUpload(chunks(), { ip: '127.0.0.1', token: 'b'.repeat(64), podName: 'p' }, { length: qcow2.length }, job.port),
      // busybox answers 401 and closes while the body is still being written: either the answer or the broken write is reported.
      (err: unknown) => err instanceof SubresourceError && err.code === 502 && /answered 401|broke off/.test(err.message),
    );
    const said = await relayUpload(chunks(), { ip: '127.0.0.1', token: TOKEN, podName: 'p' }, { length: qcow2.length }, job.port);
    assert.match(said, new RegExp(`the upload is at byte ${String(qcow2.length)} of ${String(qcow2.length)}$`, 'm'));
    assert.equal(await job.done, 0);
    assert.ok((await readFile(path.join(job.root, 'vmimages/ns/relay.qcow2'))).equals(qcow2), 'a qcow2 kept as it is: the same bytes');
  });

  void it('in parts: offsets checked, a part cut short cut off again, bad parts refused harmlessly, resumed to the same bytes', async () => {
    const job = await start('parts', 'qcow2');
    const auth = `${IMPORT_UPLOAD_USER}:${TOKEN}`;
    const size = qcow2.length;
    const part = (offset: number, body: Buffer, total = size): Promise<{ status: number; text: string }> =>
      post(job.port, body, auth, 'POST', `?offset=${String(offset)}&size=${String(total)}`);
    const work = path.join(job.root, 'vmimages/ns/.parts.uid.import/source');
    const held = async (): Promise<number> => (await readFile(work).catch(() => Buffer.alloc(0))).length;
    const probe = await part(0, Buffer.alloc(0));
    assert.deepEqual([probe.status, probe.text.trim()], [200, `the upload is at byte 0 of ${String(size)}`], 'an empty part says where the upload stands');
    const first = 1024 * 1024;
    assert.equal((await part(0, qcow2.subarray(0, first))).status, 200);
    // A part cut short: the file keeps the whole parts only.
    await cutShort(job.port, 1024 * 1024, qcow2.subarray(first, first + 300_000), `?offset=${String(first)}&size=${String(size)}`);
    await eventually('the cut part is cut off again', async () => ((await held()) === first ? true : undefined));
    const refusals: [string, () => Promise<{ status: number; text: string }>, number, RegExp][] = [
      ['a part at another offset', () => part(first + 10, qcow2.subarray(first + 10, first + 20)), 409, new RegExp(`offset: the upload is at byte ${String(first)} of ${String(size)}, not ${String(first + 10)}`)],
      ['a part of another size', () => part(first, qcow2.subarray(first, first + 10), size + 1), 409, new RegExp(`size: the upload was begun for ${String(size)} bytes`)],
      ['a part past the size', () => part(first, Buffer.alloc(size), size), 400, /ends past the size/],
      ['a garbage query', () => post(job.port, qcow2.subarray(first, first + 10), auth, 'POST', '?offset=-1&size=x'), 400, /offset and size must be byte counts/],
    ];
    for (const [what, answer, status, message] of refusals) {
      const r = await answer();
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.match(r.text, message, what);
      assert.equal(await held(), first, `${what} harms nothing`);
    }
    const resumed = await part(0, Buffer.alloc(0));
    assert.equal(resumed.status, 409);
    assert.match(resumed.text, new RegExp(`the upload is at byte ${String(first)} of`));
    for (let at = first; at < size; at += 1024 * 1024) {
      const r = await part(at, qcow2.subarray(at, Math.min(size, at + 1024 * 1024)));
      assert.equal(r.status, 200, r.text);
    }
    assert.equal(await job.done, 0);
    assert.ok((await readFile(path.join(job.root, 'vmimages/ns/parts.qcow2'))).equals(qcow2), 'the same bytes as sent in one piece');
    assert.deepEqual(await readdir(path.join(job.root, 'vmimages/ns')), ['parts.qcow2'], 'no work directory left');
  });

  void it('a corrupt upload fails with CorruptImage and leaves nothing', async () => {
    const job = await start('bad', 'qcow2');
    const corrupt = Buffer.from(qcow2);
    corrupt.writeBigUInt64BE(0x12345n, 40);
    assert.equal((await post(job.port, corrupt, `${IMPORT_UPLOAD_USER}:${TOKEN}`)).status, 200);
    assert.notEqual(await job.done, 0);
    const result = parseImportResult(await readFile(job.resultFile, 'utf8'));
    assert.ok(result !== undefined && 'failed' in result, JSON.stringify(result));
    assert.equal(result.reason, 'CorruptImage');
    assert.deepEqual(await readdir(path.join(job.root, 'vmimages/ns')), [], 'nothing on the domain');
  });
});

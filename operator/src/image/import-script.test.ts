// The importer script run for real on this machine (sh, curl, tar, sha256sum, real
// qemu-img, busybox httpd) against a domain directory and an HTTP server and a
// registry-API server on loopback: every outcome, what it leaves on the domain, an
// HTTP Range resume, and the progress document it serves while it downloads.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseImportResult, type ImportResult } from './import-job.ts';
import { IMPORT_SCRIPT } from './import-script.ts';

const run = promisify(execFile);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function listen(handler: Handler): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function freePort(): Promise<number> {
  const { server, port } = await listen(() => undefined);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Serves `file` with byte ranges; `cut` ends the first answer after that many bytes. */
function rangeServer(files: Map<string, Buffer>, seen: string[], options: { cutFirstAt?: number; bytesPerSecond?: number } = {}): Handler {
  let cut = options.cutFirstAt;
  return (req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''} ${req.headers.range ?? ''}`);
    const body = files.get(req.url ?? '');
    if (body === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range === null ? 0 : Number(range[1]);
    const headers = { 'content-length': String(body.length - start), 'accept-ranges': 'bytes', ...(range === null ? {} : { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` }) };
    res.writeHead(range === null ? 200 : 206, headers);
    const part = body.subarray(start);
    if (cut !== undefined) {
      const at = cut;
      cut = undefined;
      res.write(part.subarray(0, at), () => res.socket?.destroy());
      return;
    }
    if (options.bytesPerSecond === undefined) {
      res.end(part);
      return;
    }
    const chunk = Math.max(1, Math.floor(options.bytesPerSecond / 10));
    let offset = 0;
    const timer = setInterval(() => {
      if (offset >= part.length || res.destroyed) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(part.subarray(offset, offset + chunk));
      offset += chunk;
    }, 100);
  };
}

interface Outcome {
  code: number;
  result: ImportResult | undefined;
  files: string[];
}

void describe('the importer script (real curl, tar and qemu-img on loopback servers)', { timeout: 180_000 }, () => {
  let dir: string;
  let files: Map<string, Buffer>;
  let seen: string[];
  let http: { server: Server; port: number };
  let qcow2: Buffer;
  let raw: Buffer;
  let counter = 0;

  const domainFiles = async (root: string): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const entry of await readdir(d, { withFileTypes: true })) {
        const p = path.join(d, entry.name);
        if (entry.isDirectory()) await walk(p);
        else out.push(path.relative(root, p));
      }
    };
    await walk(root).catch(() => undefined);
    return out.sort();
  };

  const importInto = async (root: string, env: Record<string, string>, name = `img${++counter}`, format = 'raw'): Promise<Outcome> => {
    const resultFile = path.join(dir, `${name}.result`);
    const base = {
      KEYVIRT_DOMAIN_ROOT: root,
      KEYVIRT_RESULT_FILE: resultFile,
      KEYVIRT_PROGRESS_DIR: path.join(dir, `${name}.www`),
      KEYVIRT_PROGRESS_PORT: env.KEYVIRT_PROGRESS_PORT ?? String(await freePort()),
      KEYVIRT_OP: 'import',
      KEYVIRT_TARGET: `vmimages/ns/${name}.${format}`,
      KEYVIRT_WORK: `vmimages/ns/.${name}.uid.import`,
      KEYVIRT_FORMAT: format,
    };
    let code = 0;
    try {
      await run('sh', ['-c', IMPORT_SCRIPT], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...base, ...env } });
    } catch (err) {
      code = (err as { code?: number }).code ?? -1;
    }
    const text = await readFile(resultFile, 'utf8').catch(() => '');
    return { code, result: parseImportResult(text), files: await domainFiles(root) };
  };
  const freshDomain = async (): Promise<string> => mkdtemp(path.join(dir, 'domain-'));
  const url = (p: string): string => `http://127.0.0.1:${http.port}${p}`;
  const failure = (o: Outcome): { reason: string; message: string } | undefined => (o.result !== undefined && 'failed' in o.result ? o.result : undefined);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'keyvirt-import-'));
    const q = path.join(dir, 'src.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', q, '64M']);
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 4M', '-c', 'write -P 0xa5 32M 2M', q], { stdio: 'ignore' });
    qcow2 = await readFile(q);
    const r = path.join(dir, 'src.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', q, r]);
    raw = await readFile(r);
    const backed = path.join(dir, 'backed.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', q, backed]);
    const dataFile = path.join(dir, 'datafile.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(dir, 'datafile.bin')}`, dataFile, '16M']);
    const corrupt = Buffer.from(qcow2);
    // The L1 table offset (bytes 40-47) not on a cluster boundary.
    corrupt.writeBigUInt64BE(0x12345n, 40);
    files = new Map([
      ['/disk.qcow2', qcow2],
      ['/disk.raw', raw],
      ['/backed.qcow2', await readFile(backed)],
      ['/datafile.qcow2', await readFile(dataFile)],
      ['/corrupt.qcow2', corrupt],
      ['/descriptor.vmdk', Buffer.from('# Disk DescriptorFile\nversion=1\nRW 32768 FLAT "/etc/passwd" 0\n')],
    ]);
    seen = [];
    http = await listen(rangeServer(files, seen));
  });

  after(async () => {
    http.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  void it('converts a qcow2 download to raw and puts only the image in place', async () => {
    const root = await freshDomain();
    const o = await importInto(root, { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: url('/disk.qcow2'), KEYVIRT_SHA256: sha256(qcow2) }, 'conv', 'raw');
    assert.equal(o.code, 0);
    assert.deepEqual(o.files, ['vmimages/ns/conv.raw']);
    assert.ok(o.result !== undefined && !('failed' in o.result));
    assert.equal(o.result.sourceFormat, 'qcow2');
    assert.equal(o.result.virtualSize, 64 * 1024 * 1024);
    assert.equal(o.result.sourceBytes, qcow2.length);
    assert.ok((await readFile(path.join(root, 'vmimages/ns/conv.raw'))).equals(raw), 'the guest sees the same bytes');
  });

  void it('converts buffered where the domain refuses O_DIRECT (a dd that fails with EINVAL, as on such file systems)', async () => {
    const bin = await mkdtemp(path.join(dir, 'bin-'));
    await writeFile(path.join(bin, 'dd'), '#!/bin/sh\necho "dd: failed to open: Invalid argument" >&2\nexit 1\n', { mode: 0o755 });
    const root = await freshDomain();
    const o = await importInto(root, { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: url('/disk.qcow2'), PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` }, 'buffered', 'raw');
    assert.equal(o.code, 0, JSON.stringify(o.result));
    assert.deepEqual(o.files, ['vmimages/ns/buffered.raw']);
    assert.ok((await readFile(path.join(root, 'vmimages/ns/buffered.raw'))).equals(raw), 'the same bytes');
  });

  void it('keeps a qcow2 as it is once qemu-img check passes; a second run finds it in place', async () => {
    const root = await freshDomain();
    const env = { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: url('/disk.qcow2') };
    const o = await importInto(root, env, 'keep', 'qcow2');
    assert.equal(o.code, 0);
    assert.ok((await readFile(path.join(root, 'vmimages/ns/keep.qcow2'))).equals(qcow2));
    const again = await importInto(root, { ...env, KEYVIRT_URL: url('/missing') }, 'keep', 'qcow2');
    assert.equal(again.code, 0, 'idempotent: the image is there, nothing is downloaded');
    assert.deepEqual(again.files, ['vmimages/ns/keep.qcow2']);
  });

  void it('converts raw to qcow2', async () => {
    const root = await freshDomain();
    const o = await importInto(root, { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: url('/disk.raw') }, 'toq', 'qcow2');
    assert.equal(o.code, 0);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path.join(root, 'vmimages/ns/toq.qcow2')], { encoding: 'utf8' })) as { format: string };
    assert.equal(info.format, 'qcow2');
    execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qcow2', path.join(dir, 'src.raw'), path.join(root, 'vmimages/ns/toq.qcow2')]);
  });

  const failures: [string, Record<string, string>, string][] = [
    ['a wrong checksum', { KEYVIRT_URL: '/disk.qcow2', KEYVIRT_SHA256: '0'.repeat(64) }, 'ChecksumMismatch'],
    ['a missing file (404)', { KEYVIRT_URL: '/nowhere.qcow2' }, 'SourceNotFound'],
    ['a corrupt qcow2', { KEYVIRT_URL: '/corrupt.qcow2' }, 'CorruptImage'],
    ['a qcow2 with a backing file', { KEYVIRT_URL: '/backed.qcow2' }, 'BackingFileRefused'],
    ['a qcow2 with an external data file', { KEYVIRT_URL: '/datafile.qcow2' }, 'DataFileRefused'],
    ['a VMDK descriptor naming a host file', { KEYVIRT_URL: '/descriptor.vmdk' }, 'UnsupportedFormat'],
  ];
  for (const [what, env, reason] of failures) {
    void it(`fails on ${what} with ${reason} and leaves nothing on the domain`, async () => {
      const root = await freshDomain();
      const o = await importInto(root, { KEYVIRT_SOURCE: 'http', ...env, KEYVIRT_URL: url(env.KEYVIRT_URL ?? '') });
      assert.notEqual(o.code, 0);
      assert.equal(failure(o)?.reason, reason, JSON.stringify(o.result));
      assert.deepEqual(o.files, [], 'no half image, no download left');
    });
  }

  void it('resumes a cut download with an HTTP Range request', async () => {
    const cutSeen: string[] = [];
    const cutting = await listen(rangeServer(files, cutSeen, { cutFirstAt: 1024 * 1024 }));
    try {
      const root = await freshDomain();
      const env = { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: `http://127.0.0.1:${cutting.port}/disk.qcow2`, KEYVIRT_SHA256: sha256(qcow2) };
      const first = await importInto(root, env, 'resume', 'qcow2');
      assert.equal(failure(first)?.reason, 'SourceUnreachable');
      assert.ok(first.files.includes('vmimages/ns/.resume.uid.import/source') && !first.files.includes('vmimages/ns/resume.qcow2'), first.files.join(' '));
      const partial = await stat(path.join(root, 'vmimages/ns/.resume.uid.import/source'));
      assert.equal(partial.size, 1024 * 1024, 'the first megabyte stays for the resume');
      const second = await importInto(root, env, 'resume', 'qcow2');
      assert.equal(second.code, 0, JSON.stringify(second.result));
      assert.deepEqual(second.files, ['vmimages/ns/resume.qcow2']);
      assert.ok((await readFile(path.join(root, 'vmimages/ns/resume.qcow2'))).equals(qcow2));
      assert.ok(cutSeen.some((l) => l.endsWith(`bytes=${1024 * 1024}-`)), `a Range request: ${cutSeen.join(' | ')}`);
    } finally {
      cutting.server.close();
    }
  });

  void it('serves its progress while it downloads', async () => {
    const slow = await listen(rangeServer(files, [], { bytesPerSecond: 2 * 1024 * 1024 }));
    try {
      const root = await freshDomain();
      const port = await freePort();
      const importing = importInto(root, { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: `http://127.0.0.1:${slow.port}/disk.qcow2`, KEYVIRT_PROGRESS_PORT: String(port) }, 'slow', 'qcow2');
      let seenBytes = 0;
      let total = 0;
      for (let i = 0; i < 40 && seenBytes === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        try {
          const doc = (await (await fetch(`http://127.0.0.1:${port}/progress`)).json()) as { bytes: number; totalBytes: number; stage: string };
          if (doc.stage === 'downloading' && doc.bytes > 0) ({ bytes: seenBytes, totalBytes: total } = doc);
        } catch {
          // not listening yet
        }
      }
      const o = await importing;
      assert.equal(o.code, 0);
      assert.ok(seenBytes > 0 && seenBytes < qcow2.length, `progress seen mid-download: ${seenBytes}`);
      assert.equal(total, qcow2.length, 'the total from Content-Length');
    } finally {
      slow.server.close();
    }
  });

  void it('pulls the disk out of a containerDisk layer through the registry API and checks the layer digest', async () => {
    const layerDir = path.join(dir, 'layer');
    execFileSync('mkdir', ['-p', path.join(layerDir, 'disk')]);
    await writeFile(path.join(layerDir, 'disk/disk.qcow2'), qcow2);
    execFileSync('tar', ['-czf', path.join(dir, 'layer.tar.gz'), '-C', layerDir, 'disk']);
    const layer = await readFile(path.join(dir, 'layer.tar.gz'));
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const digest = (b: Buffer): string => `sha256:${sha256(b)}`;
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest(layer), size: layer.length }],
    });
    const tampered = Buffer.from(layer);
    tampered[tampered.length - 10] = (tampered[tampered.length - 10] ?? 0) ^ 0xff;
    let serveTampered = false;
    const registry = await listen((req, res) => {
      if (req.url === '/v2/images/demo/manifests/v1') res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      else if (req.url === `/v2/images/demo/blobs/${digest(layer)}`) res.writeHead(200).end(serveTampered ? tampered : layer);
      else res.writeHead(404).end();
    });
    try {
      const env = { KEYVIRT_SOURCE: 'oci', KEYVIRT_REGISTRY_SCHEME: 'http', KEYVIRT_REGISTRY: `127.0.0.1:${registry.port}`, KEYVIRT_REPOSITORY: 'images/demo', KEYVIRT_OCI_REF: 'v1' };
      const root = await freshDomain();
      const o = await importInto(root, env, 'oci', 'raw');
      assert.equal(o.code, 0, JSON.stringify(o.result));
      assert.deepEqual(o.files, ['vmimages/ns/oci.raw']);
      assert.ok((await readFile(path.join(root, 'vmimages/ns/oci.raw'))).equals(raw));
      serveTampered = true;
      const bad = await importInto(await freshDomain(), env, 'tampered', 'raw');
      assert.equal(failure(bad)?.reason, 'ChecksumMismatch');
      assert.deepEqual(bad.files, []);
      const missing = await importInto(await freshDomain(), { ...env, KEYVIRT_OCI_REF: 'v2' }, 'nov2', 'raw');
      assert.equal(failure(missing)?.reason, 'SourceNotFound');
    } finally {
      registry.server.close();
    }
  });

  void it('removes the image and any work directory on delete', async () => {
    const root = await freshDomain();
    const o = await importInto(root, { KEYVIRT_SOURCE: 'http', KEYVIRT_URL: url('/disk.raw') }, 'gone', 'raw');
    assert.equal(o.code, 0);
    await run('sh', ['-c', IMPORT_SCRIPT], { env: { PATH: process.env.PATH ?? '', KEYVIRT_DOMAIN_ROOT: root, KEYVIRT_OP: 'delete', KEYVIRT_TARGET: 'vmimages/ns/gone.raw', KEYVIRT_WORK: 'vmimages/ns/.gone.uid.import', KEYVIRT_FORMAT: 'raw' } });
    assert.deepEqual(await domainFiles(root), []);
  });
});

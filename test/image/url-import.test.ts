// VirtualMachineImage imports against the real API server, the real operator and real
// job pods on the local cluster: an image served over HTTP by a pod inside the
// cluster (throttled, so the progress can be watched in status) is downloaded,
// checked against its SHA-256, converted by qemu-img and put in place on a local
// StorageDomain — a hostPath directory the simulated nodes share with this machine,
// so the test reads the result directly. A wrong checksum, a corrupt qcow2 and a
// missing file end Failed with their reason and leave nothing on the domain; deleting
// an image removes its file.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, scratch, type Scratch } from '../operator/vm-fixtures.ts';
import { imageBench, type ImageBench } from './image-fixtures.ts';

const SUITE = 'image-import';
/** Bytes per second the server sends: the ~24 MiB source takes about 6 s. */
const SERVER_RATE = 4 * 1024 * 1024;

void describe('VirtualMachineImage: import from a URL inside the cluster onto a StorageDomain', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let operator: OperatorProcess;
  let b: ImageBench;
  let source: Buffer;

  /** Everything under the namespace's image directory on the domain (hidden work directories included). */
  const imageFiles = async (): Promise<string[]> => (await readdir(path.join(b.domainDir, 'vmimages', s.namespace)).catch(() => [] as string[])).sort();

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-img');
    operator = await startSuiteOperator(cluster, s, SUITE);
    b = await imageBench(cluster, s, {
      rate: SERVER_RATE,
      fill: async (srvDir) => {
        // The source: a 256 MiB qcow2 with 24 MiB of data in two places.
        const qcow2 = path.join(srvDir, 'disk.qcow2');
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '256M']);
        execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 16M', '-c', 'write -P 0xa5 200M 8M', qcow2], { stdio: 'ignore' });
        source = await readFile(qcow2);
        const corrupt = Buffer.from(source);
        corrupt.writeBigUInt64BE(0x12345n, 40); // the L1 table offset, off a cluster boundary
        await writeFile(path.join(srvDir, 'corrupt.qcow2'), corrupt);
      },
    });
  });

  after(async () => {
    await b.cleanup(() => stopOperator(operator));
  });

  void it('downloads, verifies and converts an image, with its progress in status', async () => {
    const sha256 = createHash('sha256').update(source).digest('hex');
    apply(cluster, b.httpImage('from-url', b.url('disk.qcow2'), { sha256 }));
    const seen: { bytes: number; percent?: number | undefined; display?: string | undefined }[] = [];
    const ready = await b.waitImage('from-url', 'Ready', (i) => {
      const p = i.status?.progress;
      if (i.status?.phase === 'Importing' && p !== undefined && p.bytes > 0 && (p.percent ?? 0) < 100) seen.push({ bytes: p.bytes, percent: p.percent, display: p.display });
      assert.notEqual(i.status?.phase, 'Failed', JSON.stringify(i.status));
      return i.status?.phase === 'Ready';
    });
    assert.ok(seen.length > 0, 'progress seen in status while importing');
    const first = seen[0];
    assert.ok(first !== undefined && first.bytes < source.length && first.percent !== undefined, JSON.stringify(seen));
    assert.match(first.display ?? '', /^\d+%/);
    const st = ready.status;
    assert.equal(st?.format, 'raw');
    assert.equal(st?.sourceFormat, 'qcow2');
    assert.equal(st?.virtualSize, 256 * 1024 * 1024);
    assert.equal(st?.size, '256Mi');
    assert.equal(st?.progress?.percent, 100);
    assert.equal(st?.path, `vmimages/${s.namespace}/from-url.raw`);
    assert.equal(st?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    const stored = path.join(b.domainDir, 'vmimages', s.namespace, 'from-url.raw');
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', path.join(b.srvDir, 'disk.qcow2'), stored]);
    assert.deepEqual(await imageFiles(), ['from-url.raw'], 'only the image: no work directory left');
    const row = cluster.kubectl(['get', 'virtualmachineimage', 'from-url', '-n', s.namespace, '--no-headers']);
    assert.match(row, /^from-url\s+Ready\s+100%\s+256Mi\s+raw\s+/);
  });

  const failures: [string, string, { sha256?: string }, string][] = [
    ['a wrong checksum', 'disk.qcow2', { sha256: '0'.repeat(64) }, 'ChecksumMismatch'],
    ['a corrupt qcow2', 'corrupt.qcow2', {}, 'CorruptImage'],
    ['a missing file', 'missing.qcow2', {}, 'SourceNotFound'],
  ];
  for (const [what, file, extra, reason] of failures) {
    void it(`ends Failed with ${reason} on ${what}, leaving no half image`, async () => {
      const name = `bad-${reason.toLowerCase()}`;
      apply(cluster, b.httpImage(name, b.url(file), { ...extra, format: 'qcow2' }));
      const failed = await b.waitImage(name, 'Failed', (i) => i.status?.phase === 'Failed');
      assert.equal(failed.status?.reason, reason, JSON.stringify(failed.status));
      assert.equal(failed.status?.conditions?.find((c) => c.type === 'Ready')?.reason, reason);
      assert.ok((failed.status?.message ?? '') !== '');
      const left = (await imageFiles()).filter((f) => f.includes(name));
      assert.deepEqual(left, [], 'nothing of the failed image on the domain');
    });
  }

  void it('deleting an image mid-import stops its job and leaves nothing on the domain', async () => {
    apply(cluster, b.httpImage('cut-short', b.url('disk.qcow2'), { format: 'qcow2' }));
    await b.waitImage('cut-short', 'importing', (i) => i.status?.phase === 'Importing' && (i.status.progress?.bytes ?? 0) > 0);
    cluster.kubectl(['delete', 'virtualmachineimage', 'cut-short', '-n', s.namespace, '--wait=false']);
    await eventually('image cut-short gone', () => (b.getImage('cut-short') === undefined ? true : undefined), 120_000, 500);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.deepEqual((await imageFiles()).filter((f) => f.includes('cut-short')), [], 'no image, no download');
  });

  void it('deleting an image removes its file from the domain', async () => {
    const stored = path.join(b.domainDir, 'vmimages', s.namespace, 'from-url.raw');
    assert.ok((await imageFiles()).includes('from-url.raw'));
    cluster.kubectl(['delete', 'virtualmachineimage', 'from-url', '-n', s.namespace, '--wait=false']);
    await eventually('image from-url gone', () => (b.getImage('from-url') === undefined ? true : undefined), 120_000, 500);
    assert.ok(!(await imageFiles()).includes('from-url.raw'), `${stored} removed`);
  });
});

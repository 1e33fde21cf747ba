// The claim reader's pod and the importer's authenticated download from it: the pod
// spec (read-only claim, no credentials, the image as controller) and which pod counts
// as the reader are tables; the download runs the real importer script against busybox
// httpd with the reader's configuration on this machine.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import type { VirtualMachineImage } from '@keyvirt/crds';
import type { Pod } from '../runtime/core-schemas.ts';
import { parseImportResult } from './import-job.ts';
import { IMPORT_SCRIPT } from './import-script.ts';
import { findPvcReader, PVC_READER_PORT, pvcReaderPod, pvcReaderPodName, pvcReaderUrl } from './pvc-reader.ts';

const image = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachineImage', metadata: { name: 'img', namespace: 'team', uid: 'u-1' }, spec: {} } as unknown as VirtualMachineImage;
const name = pvcReaderPodName('team', 'img', 'u-1');

void describe('the claim reader pod', () => {
  void it('mounts the claim read-only, holds no credentials but its token, and is controlled by the image', () => {
    const pod = JSON.stringify(pvcReaderPod({ image, claimName: 'disk-claim', token: 'tok', launcherImage: 'keyvirt/launcher:x' }));
    assert.match(pod, /"persistentVolumeClaim":\{"claimName":"disk-claim","readOnly":true\}/);
    assert.match(pod, /"mountPath":"\/source","readOnly":true/);
    assert.match(pod, /"automountServiceAccountToken":false/);
    assert.match(pod, /"readOnlyRootFilesystem":true/);
    assert.match(pod, /"kind":"VirtualMachineImage","name":"img","uid":"u-1","controller":true/);
    assert.match(pod, /"KEYVIRT_READER_TOKEN","value":"tok"/);
    assert.match(pod, new RegExp(`"namespace":"team"`));
  });

  const pod = (o: { name?: string; namespace?: string; kind?: string; uid?: string; reader?: string; phase?: string; ip?: string } = {}): Pod =>
    ({
      metadata: {
        name: o.name ?? name,
        namespace: o.namespace ?? 'team',
        labels: { 'keyvirt.io/storage-job': o.reader ?? 'read-image' },
        ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: o.kind ?? 'VirtualMachineImage', name: 'img', uid: o.uid ?? 'u-1', controller: true }],
      },
      spec: { containers: [] },
      status: { phase: o.phase ?? 'Running', podIP: o.ip ?? '10.1.2.3' },
    });
  const cases: [string, Parameters<typeof pod>[0], boolean][] = [
    ['the reader', {}, true],
    ['another name', { name: 'x' }, false],
    ['another namespace', { namespace: 'other' }, false],
    ['another owner', { kind: 'VirtualMachine' }, false],
    ['an older image of that name', { uid: 'u-0' }, false],
    ['another storage job', { reader: 'import-image' }, false],
  ];
  for (const [what, o, found] of cases) {
    void it(`${what}: ${found ? 'found' : 'not the reader'}`, () => assert.equal(findPvcReader([pod(o)], image) !== undefined, found));
  }
  void it('is downloaded from once it runs with an IP', () => {
    assert.equal(pvcReaderUrl(pod()), `http://10.1.2.3:${String(PVC_READER_PORT)}/disk.img`);
    assert.equal(pvcReaderUrl(pod({ phase: 'Pending' })), undefined);
    assert.equal(pvcReaderUrl(pod({ ip: 'fd00::5' })), `http://[fd00::5]:${String(PVC_READER_PORT)}/disk.img`);
  });
});

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

void describe('importer script: an authenticated download from a claim reader', { timeout: 120_000 }, () => {
  let dir: string;
  let port: number;
  let httpd: ChildProcess;
  let raw: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keyvirt-reader-'));
    raw = path.join(dir, 'claim', 'disk.img');
    await mkdir(path.dirname(raw));
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', raw, '16M']);
    execFileSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 2M', raw], { stdio: 'ignore' });
    await mkdir(path.join(dir, 'www'));
    await symlink(raw, path.join(dir, 'www', 'disk.img'));
    await writeFile(path.join(dir, 'httpd.conf'), `/:keyvirt:${'c'.repeat(64)}\n`);
    port = await freePort();
    httpd = spawn('busybox', ['httpd', '-f', '-p', `127.0.0.1:${String(port)}`, '-h', path.join(dir, 'www'), '-c', path.join(dir, 'httpd.conf')], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
  });

  after(async () => {
    httpd.kill();
    await rm(dir, { recursive: true, force: true });
  });

  const importFrom = async (label: string, credentials: string | undefined): Promise<{ code: number; root: string; text: string }> => {
    const root = await mkdtemp(path.join(dir, 'domain-'));
    const resultFile = path.join(dir, `${label}.result`);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      KEYVIRT_DOMAIN_ROOT: root,
      KEYVIRT_RESULT_FILE: resultFile,
      KEYVIRT_PROGRESS_DIR: path.join(dir, `${label}.www`),
      KEYVIRT_PROGRESS_PORT: String(await freePort()),
      KEYVIRT_OP: 'import',
      KEYVIRT_SOURCE: 'http',
      KEYVIRT_URL: `http://127.0.0.1:${String(port)}/disk.img`,
      ...(credentials === undefined ? {} : { KEYVIRT_HTTP_CREDENTIALS: credentials }),
      KEYVIRT_TARGET: `vmimages/ns/${label}.qcow2`,
      KEYVIRT_WORK: `vmimages/ns/.${label}.uid.import`,
      KEYVIRT_FORMAT: 'qcow2',
    };
    const code = await new Promise<number>((resolve) => {
      execFile('sh', ['-c', IMPORT_SCRIPT], { env }, (err) => resolve(err === null ? 0 : typeof err.code === 'number' ? err.code : -1));
    });
    return { code, root, text: await readFile(resultFile, 'utf8').catch(() => '') };
  };

  void it('with the token: the claim disk lands converted to qcow2 with the same bytes', async () => {
    const o = await importFrom('ok', `keyvirt:${'c'.repeat(64)}`);
    assert.equal(o.code, 0, o.text);
    execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qcow2', raw, path.join(o.root, 'vmimages/ns/ok.qcow2')]);
    assert.deepEqual(await readdir(path.join(o.root, 'vmimages/ns')), ['ok.qcow2']);
  });

  void it('without it: refused by the reader (HTTP 401), nothing left', async () => {
    const o = await importFrom('anon', undefined);
    assert.notEqual(o.code, 0);
    const result = parseImportResult(o.text);
    assert.ok(result !== undefined && 'failed' in result, o.text);
    assert.equal(result.reason, 'SourceHttpError');
    assert.match(result.message, /HTTP 401/);
    assert.deepEqual(await readdir(path.join(o.root, 'vmimages/ns')), []);
  });
});

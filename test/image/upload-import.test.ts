// VirtualMachineImage upload imports on the local cluster, end to end: `kubectl keyvirt
// image-upload` run as a user with a ServiceAccount token streams the test guest's disk
// through the real kube-apiserver (API aggregation, RBAC) to the operator's
// virtualmachineimages/upload subresource, which relays it to the image's import job
// pod (busybox httpd behind the job's token); the job checks, converts and renames it
// onto a local StorageDomain the test reads directly. The plugin sends in parts (ADR
// 0109): an upload held to a rate that makes it last longer than the kube-apiserver's
// request timeout (60 s, the cluster's default) succeeds, and one killed halfway leaves
// no image and resumes where it stood. A user bound only to view gets 403, another
// namespace's image is out of reach, bad parts are refused with the field named and
// harm nothing; a corrupt upload ends Failed with its reason and leaves nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachineImageInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest } from '../support/guest.ts';
import { type OperatorProcess, startSubresourceOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, scratch, type Scratch, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { pluginOnPath, runToEnd, start, tokenKubeconfig, type Finished } from '../plugin/plugin-process.ts';
import { apiRequest, chartUserRoles, serviceAccountUser, type ApiUser } from '../subresources/api-user.ts';
import { imageBench, type ImageBench } from './image-fixtures.ts';

const SUITE = 'image-upload';
/** The kube-apiserver's --request-timeout: the local cluster runs with the default. */
const API_REQUEST_TIMEOUT_MS = 60_000;

/**
 * One PUT of the whole of `body` at `rate` bytes per second as `user`: when it ended (ms
 * after it began) and with which status, or none when the connection was cut.
 */
function slowPut(user: ApiUser, urlPath: string, body: Buffer, rate: number): Promise<{ at: number; status?: number; text?: string }> {
  const began = Date.now();
  return new Promise((resolve) => {
    const req = https.request(new URL(urlPath, user.server), {
      method: 'PUT',
      ca: user.ca,
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/octet-stream', 'content-length': body.length },
    });
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = (v: { status?: number; text?: string }): void => {
      clearTimeout(timer);
      req.destroy();
      resolve({ at: Date.now() - began, ...v });
    };
    req.once('error', (err) => done({ text: err.message }));
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('end', () => done({ status: res.statusCode, text: Buffer.concat(parts).toString('utf8').slice(0, 300) }));
      res.once('error', (err) => done({ status: res.statusCode, text: err.message }));
    });
    const step = 64 * 1024;
    const next = (): void => {
      if (sent >= body.length) return void req.end();
      req.write(body.subarray(sent, sent + step));
      sent += step;
      timer = setTimeout(next, (step / rate) * 1000);
    };
    next();
  });
}

function shown(r: Finished): string {
  return `exit ${String(r.code)}; stdout: ${r.stdout}; stderr: ${r.stderr}`;
}

void describe('VirtualMachineImage: upload through kubectl keyvirt and the aggregated API', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let operator: OperatorProcess;
  let b: ImageBench;
  let env: NodeJS.ProcessEnv;
  let userConfig: string;
  let viewerConfig: string;
  let viewerUser: ApiUser;
  let uploaderUser: ApiUser;
  let disk: string;
  let corrupt: string;

  const imageFiles = async (): Promise<string[]> => (await readdir(path.join(b.domainDir, 'vmimages', s.namespace)).catch(() => [] as string[])).sort();
  const uploadImage = (name: string, format: 'qcow2' | 'raw'): VirtualMachineImageInput => ({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineImage',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { storageDomain: b.domain, format, source: { upload: {} } },
  });
  const upload = (name: string, file: string, config: string, extra: readonly string[] = []): Promise<Finished> =>
    runToEnd(cluster.kubectlPath, ['keyvirt', 'image-upload', name, '--file', file, '--timeout', '240', ...extra], { ...env, KUBECONFIG: config }, 300_000);
  const uploadUrl = (namespace: string, name: string, query = ''): string => `/apis/subresources.keyvirt.io/v1alpha1/namespaces/${namespace}/virtualmachineimages/${name}/upload${query}`;

  before(async () => {
    cluster = await ensureCluster();
    const guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-upl');
    operator = await startSubresourceOperator(cluster, s, SUITE);
    b = await imageBench(cluster, s, {
      rate: 0,
      fill: async (srvDir) => {
        disk = await copyBootDisk(guest, path.join(srvDir, 'guest.qcow2'), 'qcow2');
        const broken = await readFile(disk);
        broken.writeBigUInt64BE(0x12345n, 40); // the L1 table offset, off a cluster boundary
        corrupt = path.join(srvDir, 'corrupt.qcow2');
        await writeFile(corrupt, broken);
      },
    });
    cluster.kubectl(['apply', '--server-side', '--field-manager=keyvirt-tests', '-f', '-'], chartUserRoles());
    const user = await serviceAccountUser(cluster, s.namespace, 'uploader');
    const viewer = await serviceAccountUser(cluster, s.namespace, 'viewer');
    viewerUser = viewer;
    uploaderUser = user;
    cluster.kubectl(['create', 'rolebinding', 'uploader-edit', '-n', s.namespace, '--clusterrole=keyvirt.io:edit', `--serviceaccount=${s.namespace}:uploader`]);
    cluster.kubectl(['create', 'rolebinding', 'viewer-view', '-n', s.namespace, '--clusterrole=keyvirt.io:view', `--serviceaccount=${s.namespace}:viewer`]);
    env = await pluginOnPath(s.dir);
    userConfig = await tokenKubeconfig(cluster, path.join(s.dir, 'user.kubeconfig'), user, s.namespace);
    viewerConfig = await tokenKubeconfig(cluster, path.join(s.dir, 'viewer.kubeconfig'), viewer, s.namespace);
  });

  after(async () => {
    await b.cleanup(() => stopOperator(operator));
  });

  void it('uploads the guest disk: the image waits for it, receives it, converts it, Ready with the same bytes', async () => {
    apply(cluster, uploadImage('uploaded', 'raw'));
    const waiting = await b.waitImage('uploaded', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    assert.equal(waiting.status?.phase, 'Importing');
    const r = await upload('uploaded', disk, userConfig);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stderr, /uploaded [\d.]+ MiB \/ [\d.]+ MiB \(100%\)/);
    assert.match(r.stdout, /VirtualMachineImage "uploaded" is Ready: \d+Mi raw \(uploaded as qcow2\)/);
    const ready = b.getImage('uploaded');
    assert.equal(ready?.status?.phase, 'Ready', JSON.stringify(ready?.status));
    assert.equal(ready.status?.sourceFormat, 'qcow2');
    assert.equal(ready.status?.progress?.bytes, (await readFile(disk)).length);
    const stored = path.join(b.domainDir, 'vmimages', s.namespace, 'uploaded.raw');
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', disk, stored]);
    assert.deepEqual(await imageFiles(), ['uploaded.raw'], 'only the image: no work directory left');
  });

  void it('an upload lasting longer than the API server\'s request timeout succeeds in parts, where one request is cut', { timeout: 6 * 60_000 }, async (t) => {
    apply(cluster, uploadImage('slow', 'qcow2'));
    await b.waitImage('slow', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const size = (await readFile(disk)).length;
    // Held to a rate that makes the whole upload last about 80 s.
    const rate = Math.ceil(size / 80);
    // Beside it, at the same rate, the same file as one request: the API server cuts it at its timeout (the limit is real here).
    apply(cluster, uploadImage('slow-whole', 'qcow2'));
    await b.waitImage('slow-whole', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const whole = slowPut(uploaderUser, uploadUrl(s.namespace, 'slow-whole'), await readFile(disk), rate);
    const started = Date.now();
    const r = await upload('slow', disk, userConfig, ['--limit-rate', String(rate)]);
    const tookMs = Date.now() - started;
    const cut = await whole;
    t.diagnostic(`in parts: ${String(tookMs)} ms; one request: ended after ${String(cut.at)} ms with ${String(cut.status ?? 'the connection cut')} ${cut.text ?? ''}`);
    assert.ok(cut.at < API_REQUEST_TIMEOUT_MS + 15_000 && (cut.status === undefined || cut.status === 504), `the one-request upload: ${JSON.stringify(cut)}`);
    assert.ok(cut.at >= API_REQUEST_TIMEOUT_MS - 1000, `cut at ${String(cut.at)} ms, before the timeout: ${JSON.stringify(cut)}`);
    assert.notEqual(b.getImage('slow-whole')?.status?.phase, 'Ready');
    assert.equal(r.code, 0, shown(r));
    assert.ok(tookMs > API_REQUEST_TIMEOUT_MS + 5000, `the upload took ${String(tookMs)} ms, not longer than the request timeout`);
    assert.doesNotMatch(r.stderr, /broke off/, 'no part needed a second try');
    assert.match(r.stdout, /VirtualMachineImage "slow" is Ready/);
    assert.ok((await readFile(path.join(b.domainDir, 'vmimages', s.namespace, 'slow.qcow2'))).equals(await readFile(disk)), 'the same bytes');
  });

  void it('an upload killed halfway leaves no image; run again, it resumes where it stood and the image is whole', { timeout: 6 * 60_000 }, async () => {
    apply(cluster, uploadImage('resumed', 'raw'));
    await b.waitImage('resumed', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const size = (await readFile(disk)).length;
    const first = start(cluster.kubectlPath, ['keyvirt', 'image-upload', 'resumed', '--file', disk, '--limit-rate', String(Math.ceil(size / 40))], { ...env, KUBECONFIG: userConfig });
    const before = await first.until('stderr', /\((?:[4-9]\d)%\)/, 120_000);
    first.child.kill('SIGKILL');
    const killedAt = Math.max(...[...before.matchAll(/uploaded ([\d.]+) MiB/g)].map((m) => Number(m[1])));
    await first.exited;
    const held = await b.waitImage('resumed', 'part of the upload on the import job', (i) => (i.status?.progress?.bytes ?? 0) > 0);
    assert.equal(held.status?.phase, 'Importing', JSON.stringify(held.status));
    assert.deepEqual((await imageFiles()).filter((f) => f.startsWith('resumed')), [], 'no image file while the upload is incomplete');
    const r = await upload('resumed', disk, userConfig);
    assert.equal(r.code, 0, shown(r));
    // At the last whole part before the kill: the part cut off was cut back, the parts before it kept.
    const resumedAt = /resuming the upload at ([\d.]+) MiB \/ [\d.]+ MiB/.exec(r.stderr);
    assert.ok(resumedAt !== null, `resumed, not restarted: ${r.stderr}`);
    const resumedMiB = Number(resumedAt[1]);
    assert.ok(resumedMiB > 0 && resumedMiB <= killedAt, `resumed at ${String(resumedMiB)} MiB, killed at ${String(killedAt)} MiB`);
    assert.match(r.stdout, /VirtualMachineImage "resumed" is Ready/);
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', disk, path.join(b.domainDir, 'vmimages', s.namespace, 'resumed.raw')]);
    assert.deepEqual((await imageFiles()).filter((f) => f.includes('resumed')), ['resumed.raw'], 'only the image: no work directory left');
  });

  void it('bad parts are refused with the field named and harm nothing; another namespace\'s image is out of reach', async () => {
    apply(cluster, uploadImage('careful', 'qcow2'));
    await b.waitImage('careful', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const cases: [string, string, number, RegExp][] = [
      ['?offset=-1&size=10', 'abc', 400, /offset must be given once, as a byte count/],
      ['?offset=0&size=ten', 'abc', 400, /size must be given once/],
      ['?offset=0&size=10&path=..', 'abc', 400, /query parameter "path" is not known/],
      ['?offset=8&size=10', 'abc', 400, /ends past the size 10/],
      ['?offset=0&size=0', '', 400, /size: the image is empty/],
    ];
    for (const [query, body, status, message] of cases) {
      const a = await apiRequest(uploaderUser, 'PUT', uploadUrl(s.namespace, 'careful', query), body);
      assert.equal(a.status, status, `${query}: ${a.body}`);
      assert.match(z.object({ message: z.string() }).parse(a.json()).message, message, query);
    }
    const first = await apiRequest(uploaderUser, 'PUT', uploadUrl(s.namespace, 'careful', '?offset=0&size=100'), 'x'.repeat(40));
    assert.equal(first.status, 200, first.body);
    const wrong = await apiRequest(uploaderUser, 'PUT', uploadUrl(s.namespace, 'careful', '?offset=10&size=100'), 'y'.repeat(10));
    assert.equal(wrong.status, 409, wrong.body);
    assert.match(wrong.body, /offset: the upload is at byte 40 of 100, not 10/);
    const other = await apiRequest(uploaderUser, 'PUT', uploadUrl(s.namespace, 'careful', '?offset=40&size=200'), 'y'.repeat(10));
    assert.equal(other.status, 409, other.body);
    assert.match(other.body, /size: the upload was begun for 100 bytes, not 200/);
    const probe = await apiRequest(uploaderUser, 'PUT', uploadUrl(s.namespace, 'careful', '?offset=40&size=100'), '');
    assert.equal(probe.status, 200, probe.body);
    assert.match(probe.body, /the upload is at byte 40 of 100/, 'the refused parts changed nothing');
    assert.equal(b.getImage('careful')?.status?.phase, 'Importing');
    // The same user, with edit in its own namespace only.
    const away = await apiRequest(uploaderUser, 'PUT', uploadUrl('default', 'careful', '?offset=0&size=100'), 'x');
    assert.equal(away.status, 403, away.body);
  });

  void it('a user bound only to view gets 403 and the image keeps waiting', async () => {
    apply(cluster, uploadImage('not-yours', 'qcow2'));
    await b.waitImage('not-yours', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const r = await upload('not-yours', disk, viewerConfig);
    assert.equal(r.code, 4, shown(r));
    assert.match(r.stderr, new RegExp(`^error: forbidden: you may not update virtualmachineimages/upload \\(API group subresources\\.keyvirt\\.io\\) in namespace "${s.namespace}"`, 'm'));
    // The API itself refuses, whatever the client asks first: a raw PUT and POST as that user.
    for (const method of ['PUT', 'POST']) {
      const raw = await apiRequest(viewerUser, method, uploadUrl(s.namespace, 'not-yours'), 'not an image');
      assert.equal(raw.status, 403, `${method}: ${raw.body}`);
    }
    const part = await apiRequest(viewerUser, 'PUT', uploadUrl(s.namespace, 'not-yours', '?offset=0&size=12'), 'not an image');
    assert.equal(part.status, 403, `a part: ${part.body}`);
    const still = b.getImage('not-yours');
    assert.equal(still?.status?.phase, 'Importing', JSON.stringify(still?.status));
    assert.equal(still.status?.progress?.display, 'waiting for upload');
    assert.deepEqual((await imageFiles()).filter((f) => f.startsWith('not-yours')), [], 'no image file');
  });

  void it('a corrupt upload ends Failed with CorruptImage, the plugin prints the reason, nothing is left on the domain', async () => {
    apply(cluster, uploadImage('broken', 'qcow2'));
    const r = await upload('broken', corrupt, userConfig);
    assert.equal(r.code, 1, shown(r));
    assert.match(r.stderr, /^error: VirtualMachineImage "broken" failed: CorruptImage: /m);
    const failed = b.getImage('broken');
    assert.equal(failed?.status?.phase, 'Failed');
    assert.equal(failed.status?.reason, 'CorruptImage');
    assert.deepEqual((await imageFiles()).filter((f) => f.includes('broken')), [], 'nothing of the failed image on the domain');
  });

  void it('an image that does not take uploads is refused with the reason', async () => {
    apply(cluster, b.httpImage('from-url', b.url('guest.qcow2'), { format: 'qcow2' }));
    const r = await upload('from-url', disk, userConfig);
    assert.equal(r.code, 5, shown(r));
    assert.match(r.stderr, /does not take an upload: its spec\.source is not upload/);
  });
});

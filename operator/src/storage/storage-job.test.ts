import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { jobOutcome, operationEnv, STORAGE_JOB_SCRIPT, storageJobPod, type StorageJobOperation } from './storage-job.ts';

const run = promisify(execFile);

/** Runs the job script on a directory standing in for the mounted domain, as the pod would. */
async function runJob(root: string, operation: StorageJobOperation): Promise<{ code: number; message: string }> {
  const resultFile = join(root, '..', 'termination-log');
  await writeFile(resultFile, '');
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', KEYVIRT_DOMAIN_ROOT: root, KEYVIRT_RESULT_FILE: resultFile };
  for (const e of operationEnv(operation)) env[e.name] = e.value;
  let code = 0;
  try {
    await run('sh', ['-c', STORAGE_JOB_SCRIPT], { env });
  } catch (err) {
    code = (err as { code: number }).code;
  }
  return { code, message: await readFile(resultFile, 'utf8') };
}

async function qemuImgInfo(path: string): Promise<{ format: string; 'virtual-size': number; 'backing-filename'?: string }> {
  const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', path]);
  return JSON.parse(stdout) as { format: string; 'virtual-size': number; 'backing-filename'?: string };
}

async function domainDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'keyvirt-storage-job-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'domain');
  await mkdir(root);
  return root;
}

void test('probe reports the filesystem capacity in bytes', async (t) => {
  const root = await domainDir(t);
  const { code, message } = await runJob(root, { op: 'probe' });
  assert.equal(code, 0);
  const outcome = jobOutcome({ status: { phase: 'Succeeded', containerStatuses: [{ state: { terminated: { exitCode: 0, message } } }] } });
  assert.equal(outcome.state, 'succeeded');
  const result = outcome.state === 'succeeded' ? outcome.result : undefined;
  assert.ok(result !== undefined);
  assert.ok(result.capacityBytes > 0 && result.freeBytes > 0);
  assert.ok(result.usedBytes + result.freeBytes <= result.capacityBytes);
});

void test('creates a thin qcow2 of the given size, idempotently, then deletes it', async (t) => {
  const root = await domainDir(t);
  const image = 'images/prod/web-1/root.qcow2';
  const op: StorageJobOperation = { op: 'create', image, format: 'qcow2', sizeBytes: 20 * 2 ** 30 };
  const first = await runJob(root, op);
  assert.equal(first.code, 0, first.message);
  assert.match(first.message, /"created":true/);
  const info = await qemuImgInfo(join(root, image));
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], 20 * 2 ** 30);
  assert.ok((await stat(join(root, image))).size < 2 ** 20, 'thin: a 20 GiB image takes well under 1 MiB');
  const again = await runJob(root, op);
  assert.equal(again.code, 0);
  assert.match(again.message, /"created":false/);
  const removed = await runJob(root, { op: 'delete', image });
  assert.equal(removed.code, 0);
  await assert.rejects(stat(join(root, 'images/prod')), { code: 'ENOENT' });
});

void test('qcow2 over a backing image uses a relative backing path; raw clones and grows it', async (t) => {
  const root = await domainDir(t);
  await mkdir(join(root, 'templates'));
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'templates/debian-12'), '64M']);
  const overlay = await runJob(root, { op: 'create', image: 'images/ns/vm/root.qcow2', format: 'qcow2', sizeBytes: 128 * 2 ** 20, backing: 'templates/debian-12' });
  assert.equal(overlay.code, 0, overlay.message);
  const info = await qemuImgInfo(join(root, 'images/ns/vm/root.qcow2'));
  assert.equal(info['backing-filename'], '../../../templates/debian-12');
  assert.equal(info['virtual-size'], 128 * 2 ** 20);
  const raw = await runJob(root, { op: 'create', image: 'images/ns/vm/data.raw', format: 'raw', sizeBytes: 96 * 2 ** 20, backing: 'templates/debian-12' });
  assert.equal(raw.code, 0, raw.message);
  const rawInfo = await qemuImgInfo(join(root, 'images/ns/vm/data.raw'));
  assert.equal(rawInfo.format, 'raw');
  assert.equal(rawInfo['virtual-size'], 96 * 2 ** 20);
});

void test('a missing backing image fails with the reason in the termination message', async (t) => {
  const root = await domainDir(t);
  const { code, message } = await runJob(root, { op: 'create', image: 'images/a/b/c.qcow2', format: 'qcow2', sizeBytes: 2 ** 20, backing: 'templates/nope' });
  assert.notEqual(code, 0);
  assert.match(message, /backing image templates\/nope does not exist on the domain/);
  const outcome = jobOutcome({ status: { phase: 'Failed', containerStatuses: [{ state: { terminated: { exitCode: code, message } } }] } });
  assert.deepEqual(outcome, { state: 'failed', message: message.trim() });
});

void test('the job pod holds no credentials and mounts the domain claim', () => {
  const pod = storageJobPod({
    name: 'keyvirt-sd-probe-x',
    namespace: 'keyvirt-system',
    domain: 'x',
    claimName: 'keyvirt-sd-x',
    image: 'keyvirt/launcher:0.1.0',
    owner: { apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'x', uid: 'u', controller: true },
    operation: { op: 'probe' },
    nodeName: 'node-1',
  }) as { spec: Record<string, unknown> };
  assert.equal(pod.spec.automountServiceAccountToken, false);
  assert.equal(pod.spec.restartPolicy, 'Never');
  assert.deepEqual(pod.spec.volumes, [{ name: 'domain', persistentVolumeClaim: { claimName: 'keyvirt-sd-x' } }, { name: 'tmp', emptyDir: { sizeLimit: '16Mi' } }]);
  assert.match(JSON.stringify(pod.spec.affinity), /"values":\["node-1"\]/);
  const container = (pod.spec.containers as { securityContext: Record<string, unknown> }[])[0];
  assert.deepEqual(container?.securityContext, {
    privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
  }, 'root without capabilities, as the launcher');
});

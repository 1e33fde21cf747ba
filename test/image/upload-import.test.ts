// VirtualMachineImage upload imports on the local cluster, end to end: `kubectl keyvirt
// image-upload` run as a user with a ServiceAccount token streams the test guest's disk
// through the real kube-apiserver (API aggregation, RBAC) to the operator's
// virtualmachineimages/upload subresource, which relays it to the image's import job
// pod (busybox httpd behind the job's token); the job checks, converts and renames it
// onto a local StorageDomain the test reads directly. A user bound only to view gets
// 403; a corrupt upload ends Failed with its reason and leaves nothing on the domain.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachineImageInput } from '@keyvirt/crds';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest } from '../support/guest.ts';
import { type OperatorProcess, startSubresourceOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, scratch, type Scratch, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { pluginOnPath, runToEnd, tokenKubeconfig, type Finished } from '../plugin/plugin-process.ts';
import { apiRequest, chartUserRoles, serviceAccountUser, type ApiUser } from '../subresources/api-user.ts';
import { imageBench, type ImageBench } from './image-fixtures.ts';

const SUITE = 'image-upload';

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
  let disk: string;
  let corrupt: string;

  const imageFiles = async (): Promise<string[]> => (await readdir(path.join(b.domainDir, 'vmimages', s.namespace)).catch(() => [] as string[])).sort();
  const uploadImage = (name: string, format: 'qcow2' | 'raw'): VirtualMachineImageInput => ({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineImage',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { storageDomain: b.domain, format, source: { upload: {} } },
  });
  const upload = (name: string, file: string, config: string): Promise<Finished> =>
    runToEnd(cluster.kubectlPath, ['keyvirt', 'image-upload', name, '--file', file, '--timeout', '240'], { ...env, KUBECONFIG: config }, 300_000);

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

  void it('a user bound only to view gets 403 and the image keeps waiting', async () => {
    apply(cluster, uploadImage('not-yours', 'qcow2'));
    await b.waitImage('not-yours', 'waiting for the upload', (i) => i.status?.progress?.display === 'waiting for upload');
    const r = await upload('not-yours', disk, viewerConfig);
    assert.equal(r.code, 4, shown(r));
    assert.match(r.stderr, new RegExp(`^error: forbidden: you may not update virtualmachineimages/upload \\(API group subresources\\.keyvirt\\.io\\) in namespace "${s.namespace}"`, 'm'));
    // The API itself refuses, whatever the client asks first: a raw PUT and POST as that user.
    const uploadUrl = `/apis/subresources.keyvirt.io/v1alpha1/namespaces/${s.namespace}/virtualmachineimages/not-yours/upload`;
    for (const method of ['PUT', 'POST']) {
      const raw = await apiRequest(viewerUser, method, uploadUrl, 'not an image');
      assert.equal(raw.status, 403, `${method}: ${raw.body}`);
    }
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

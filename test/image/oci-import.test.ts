// VirtualMachineImage from an OCI registry against the real operator and job pods on
// the local cluster: Debian's docker-registry runs as a pod inside the cluster, the
// test pushes a containerDisk image to it through the registry API (the test guest's
// bootable disk as a qcow2 under /disk/ in a gzip layer), and the importer pulls the
// layer, checks its digest and stores the disk as raw on a local StorageDomain; the
// result is compared with the pushed disk byte for byte (as the guest sees it). A tag
// that is not there ends Failed with SourceNotFound. A VM then boots (TCG) from a qcow2
// disk over the image imported as qcow2, and the image's file stays while the VM exists.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachineImageInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, condition, getVm, scratch, type Scratch, TEST_RUN_LABEL, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { imageBench, type ImageBench } from './image-fixtures.ts';

const REGISTRY_PORT = 5000;
const REPOSITORY = 'keyvirt/test-guest';

const podView = z.object({ status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).optional() });

function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Pushes one blob through the registry API (monolithic upload). */
async function pushBlob(base: string, data: Buffer): Promise<string> {
  const digest = digestOf(data);
  const start = await fetch(`${base}/v2/${REPOSITORY}/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202, `blob upload start: ${start.status}`);
  const location = new URL(start.headers.get('location') ?? '', base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, `blob upload: ${put.status} ${await put.text()}`);
  return digest;
}

void describe('VirtualMachineImage: import a containerDisk from a registry inside the cluster', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let operator: OperatorProcess;
  let b: ImageBench;
  let registry: string;
  let disk: string;

  let guest: TestGuest;

  const ociImage = (name: string, reference: string, format: 'qcow2' | 'raw' = 'raw'): VirtualMachineImageInput => ({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineImage',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { storageDomain: b.domain, format, source: { oci: { reference, insecure: true } } },
  });

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-oci');
    operator = await startSuiteOperator(cluster, s, 'image-oci');
    b = await imageBench(cluster, s, { rate: 0, fill: () => Promise.resolve() });
    // Debian's docker-registry in a pod, its storage in a directory of the suite.
    const regDir = path.join(s.dir, 'registry');
    await mkdir(path.join(regDir, 'data'), { recursive: true });
    await writeFile(
      path.join(regDir, 'config.yml'),
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(regDir, 'data')}\nhttp:\n  addr: 0.0.0.0:${REGISTRY_PORT}\n`,
    );
    apply(cluster, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'registry', namespace: s.namespace },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'registry',
            image: 'keyvirt/host:dev',
            imagePullPolicy: 'Never',
            command: ['docker-registry', 'serve', path.join(regDir, 'config.yml')],
            volumeMounts: [{ name: 'registry', mountPath: regDir }],
          },
        ],
        volumes: [{ name: 'registry', hostPath: { path: regDir, type: 'Directory' } }],
      },
    });
    const ip = await eventually('the registry pod runs', () => {
      const pod = podView.parse(JSON.parse(cluster.kubectl(['get', 'pod', 'registry', '-n', s.namespace, '-o', 'json'])));
      return pod.status?.phase === 'Running' ? pod.status.podIP : undefined;
    }, 120_000);
    registry = `${ip}:${REGISTRY_PORT}`;
    const base = `http://${registry}`;
    await eventually('the registry answers', async () => ((await fetch(`${base}/v2/`).catch(() => undefined))?.status === 200 ? true : undefined), 60_000, 500);
    // The containerDisk: the guest's bootable disk as disk/disk.qcow2 in one gzip layer.
    const layerDir = path.join(s.dir, 'layer');
    await mkdir(path.join(layerDir, 'disk'), { recursive: true });
    guest = await testGuest();
    disk = await copyBootDisk(guest, path.join(layerDir, 'disk', 'disk.qcow2'), 'qcow2');
    execFileSync('tar', ['-czf', path.join(s.dir, 'layer.tar.gz'), '-C', layerDir, 'disk']);
    const layer = await readFile(path.join(s.dir, 'layer.tar.gz'));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(base, config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await pushBlob(base, layer), size: layer.length }],
    };
    const put = await fetch(`${base}/v2/${REPOSITORY}/manifests/v1`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(put.status, 201, `manifest push: ${put.status} ${await put.text()}`);
  });

  after(async () => {
    await b.cleanup(() => stopOperator(operator));
  });

  void it('pulls the disk out of the layer, checks the digest and stores it', async () => {
    apply(cluster, ociImage('guest', `${registry}/${REPOSITORY}:v1`));
    let sawProgress = false;
    const ready = await b.waitImage('guest', 'Ready', (i) => {
      if (i.status?.phase === 'Importing' && i.status.progress !== undefined) sawProgress = true;
      assert.notEqual(i.status?.phase, 'Failed', JSON.stringify(i.status));
      return i.status?.phase === 'Ready';
    });
    assert.ok(sawProgress, 'Importing with a progress seen in status');
    assert.equal(ready.status?.sourceFormat, 'qcow2');
    assert.equal(ready.status?.format, 'raw');
    const stored = path.join(b.domainDir, 'vmimages', s.namespace, 'guest.raw');
    execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', disk, stored]);
    assert.deepEqual(await readdir(path.join(b.domainDir, 'vmimages', s.namespace)), ['guest.raw']);
  });

  void it('a tag the registry does not have ends Failed with SourceNotFound', async () => {
    apply(cluster, ociImage('no-tag', `${registry}/${REPOSITORY}:v2`));
    const failed = await b.waitImage('no-tag', 'Failed', (i) => i.status?.phase === 'Failed');
    assert.equal(failed.status?.reason, 'SourceNotFound', JSON.stringify(failed.status));
    assert.ok(!(await readdir(path.join(b.domainDir, 'vmimages', s.namespace))).some((f) => f.includes('no-tag')));
  });
  void it('a VM boots from a disk over the imported image; the image stays while the VM exists', async () => {
    apply(cluster, ociImage('guest-base', `${registry}/${REPOSITORY}:v1`, 'qcow2'));
    await b.waitImage('guest-base', 'Ready', (i) => i.status?.phase === 'Ready');
    const vm = testVm(s, guest, { name: 'from-image' });
    const size = `${Math.ceil(guest.diskBytes / (1024 * 1024))}Mi`;
    vm.spec.template.disks = [{ name: 'root', bootOrder: 1, storageDomain: { name: b.domain, size, format: 'qcow2', image: 'guest-base' } }];
    apply(cluster, vm);
    const running = await waitVm(cluster, { namespace: s.namespace, name: 'from-image' }, 'guest agent connected', (v) => condition(v, 'AgentConnected')?.status === 'True', 600_000);
    assert.equal(running.status?.phase, 'Running');
    const overlay = path.join(b.domainDir, 'images', s.namespace, 'from-image', 'root.qcow2');
    const info = z.object({ 'backing-filename': z.string() }).parse(JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', overlay], { encoding: 'utf8' })));
    assert.equal(info['backing-filename'], `../../../vmimages/${s.namespace}/guest-base.qcow2`);
    cluster.kubectl(['delete', 'virtualmachineimage', 'guest-base', '-n', s.namespace, '--wait=false']);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    assert.ok(b.getImage('guest-base')?.metadata.deletionTimestamp !== undefined, 'the image is being deleted…');
    assert.ok((await readdir(path.join(b.domainDir, 'vmimages', s.namespace))).includes('guest-base.qcow2'), '…but its file stays while the VM uses it');
    cluster.kubectl(['delete', 'virtualmachine', 'from-image', '-n', s.namespace, '--wait=false']);
    await eventually('VM from-image gone', () => (getVm(cluster, s.namespace, 'from-image') === undefined ? true : undefined), 300_000, 1000);
    await eventually('image guest-base gone', () => (b.getImage('guest-base') === undefined ? true : undefined), 180_000, 1000);
    assert.ok(!(await readdir(path.join(b.domainDir, 'vmimages', s.namespace))).includes('guest-base.qcow2'), 'the file goes with the image');
  });
});

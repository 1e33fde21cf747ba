// VirtualMachineImage imports from a PersistentVolumeClaim of the image's namespace, on
// the local cluster with the real operator: a reader pod in that namespace mounts the
// claim read-only and serves its disk.img behind a per-import token; the import job
// downloads, checks, converts it onto a local StorageDomain the test reads directly,
// and the reader goes once the import ends. A claim without disk.img ends Failed with
// SourceNotFound and leaves nothing behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachineImageInput } from '@keyvirt/crds';
import { diskClaim } from '../support/boot-disk.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, scratch, type Scratch, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { imageBench, type ImageBench } from './image-fixtures.ts';

const SUITE = 'image-pvc';

void describe('VirtualMachineImage: import from a PersistentVolumeClaim of its namespace', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let operator: OperatorProcess;
  let b: ImageBench;
  let source: string;
  const pvLabel = (): Record<string, string> => ({ [TEST_RUN_LABEL]: s.runId });

  const imageFiles = async (): Promise<string[]> => (await readdir(path.join(b.domainDir, 'vmimages', s.namespace)).catch(() => [] as string[])).sort();
  const pvcImage = (name: string, claimName: string): VirtualMachineImageInput => ({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineImage',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { storageDomain: b.domain, format: 'qcow2', source: { pvc: { claimName } } },
  });
  const readers = (): string[] =>
    cluster
      .kubectl(['get', 'pods', '-n', s.namespace, '-l', 'keyvirt.io/storage-job=read-image', '-o', 'name'])
      .split('\n')
      .filter((l) => l !== '');

  before(async () => {
    cluster = await ensureCluster();
    const guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-pvc');
    operator = await startSuiteOperator(cluster, s, SUITE);
    b = await imageBench(cluster, s, { rate: 0, fill: () => Promise.resolve() });
    source = await diskClaim(cluster, { namespace: s.namespace, claimName: 'guest-disk', volumeDir: path.join(s.dir, 'claim'), labels: pvLabel(), boot: guest });
    const empty = await diskClaim(cluster, { namespace: s.namespace, claimName: 'no-disk', volumeDir: path.join(s.dir, 'claim-empty'), labels: pvLabel(), sizeMiB: 8 });
    await rm(empty);
  });

  after(async () => {
    await b.cleanup(async () => {
      await stopOperator(operator);
      cluster.kubectl(['delete', 'pods', '-n', s.namespace, '-l', 'keyvirt.io/storage-job=read-image', '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pvc', '--all', '-n', s.namespace, '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pv', '-l', `${TEST_RUN_LABEL}=${s.runId}`, '--ignore-not-found', '--wait=false']);
    });
  });

  void it('copies the claim disk through a reader pod: Ready, the same bytes, the reader gone', async () => {
    apply(cluster, pvcImage('from-claim', 'guest-disk'));
    let readerSeen = false;
    const ready = await b.waitImage('from-claim', 'Ready', (i) => {
      if (readers().length > 0) readerSeen = true;
      assert.notEqual(i.status?.phase, 'Failed', JSON.stringify(i.status));
      return i.status?.phase === 'Ready';
    });
    assert.ok(readerSeen, 'a reader pod ran in the image namespace');
    assert.equal(ready.status?.sourceFormat, 'raw');
    assert.equal(ready.status?.format, 'qcow2');
    const stored = path.join(b.domainDir, 'vmimages', s.namespace, 'from-claim.qcow2');
    execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qcow2', source, stored]);
    assert.deepEqual(await imageFiles(), ['from-claim.qcow2'], 'only the image: no work directory left');
    await eventually('the reader pod gone', () => (readers().length === 0 ? true : undefined), 60_000, 500);
  });

  void it('a claim without disk.img ends Failed with SourceNotFound, leaving nothing', async () => {
    apply(cluster, pvcImage('no-disk', 'no-disk'));
    const failed = await b.waitImage('no-disk', 'Failed', (i) => i.status?.phase === 'Failed');
    assert.equal(failed.status?.reason, 'SourceNotFound', JSON.stringify(failed.status));
    assert.deepEqual((await imageFiles()).filter((f) => f.includes('no-disk')), []);
    await eventually('the reader pod gone', () => (readers().length === 0 ? true : undefined), 60_000, 500);
  });
});

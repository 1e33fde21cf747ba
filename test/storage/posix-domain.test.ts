// A posix StorageDomain on the local cluster with the real operator: the API server
// refuses a bad spec with the field named; a good one gets a ReadWriteMany hostPath
// volume on no particular node, is measured and becomes Active; a VM's qcow2 overlay
// is created on it and the VM runs from it (real launcher, real QEMU under TCG) and is
// LiveMigratable. The same VM on a local domain, or with host-passthrough CPU and a
// bridge interface, says why it is not — with the stable reasons of the condition.
//
// The simulated nodes share this machine's file system: a directory here is the same
// directory on every node, which is exactly what a posix domain declares.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { StorageDomain, StorageDomainSpec, VirtualMachine, type StorageDomainInput } from '@keyvirt/crds';
import { readDocuments, REPO_ROOT } from '../../crds/src/manifest-files.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, type OperatorProcess, operatorKubeconfig, startOperator } from '../operator/operator-process.ts';
import { apply, condition, scratch, type Scratch, testVm, waitVm, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';

const run = promisify(execFile);

void describe('posix StorageDomains on the local cluster', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let posixDir: string;
  let localDir: string;
  const names = { posix: '', local: '', sample: '' };

  const getDomain = (name: string): StorageDomain | undefined => {
    const out = cluster.kubectl(['get', 'storagedomain', name, '-o', 'json', '--ignore-not-found']);
    return out.trim() === '' ? undefined : StorageDomain.parse(JSON.parse(out));
  };
  const waitDomain = async (name: string, what: string, ok: (sd: StorageDomain) => boolean, timeoutMs = 240_000): Promise<StorageDomain> => {
    let last = 'nothing';
    try {
      return await eventually(`StorageDomain ${name} ${what}`, () => {
        const sd = getDomain(name);
        last = JSON.stringify(sd?.status ?? null);
        return sd !== undefined && ok(sd) ? sd : undefined;
      }, timeoutMs, 1000);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status: ${last}`, { cause: err });
    }
  };
  const domain = (name: string, spec: StorageDomainInput['spec']): StorageDomainInput => ({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec,
  });
  /** Applies with server-side dry run; returns kubectl's error output (empty when accepted). */
  const dryRun = (manifest: unknown): string => {
    try {
      cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], JSON.stringify(manifest));
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-posix');
    names.posix = `sd-${s.runId}-posix`;
    names.local = `sd-${s.runId}-local`;
    names.sample = `sd-${s.runId}-sample`;
    posixDir = path.join(s.dir, 'shared');
    localDir = path.join(s.dir, 'local');
    await mkdir(path.join(posixDir, 'templates'), { recursive: true });
    await mkdir(path.join(localDir, 'templates'), { recursive: true });
    for (const dir of [posixDir, localDir]) await copyBootDisk(guest, path.join(dir, 'templates', 'base'), 'qcow2');
    const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
    operator = startOperator({
      kubeconfig,
      logFile: path.join(s.dir, 'operator.log'),
      identity: `e2e-posix-${s.runId}`,
      leaseName: `keyvirt-e2e-${s.runId}`,
      vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
      extraArgs: ['--storage-domain-selector', `${TEST_RUN_LABEL}=${s.runId}`],
    });
    await operator.healthPort;
  });

  after(async () => {
    // The operator first: alive, it would put back a finalizer cleared before the deletion.
    operator.kill('SIGTERM');
    await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 20_000))]);
    operator.kill('SIGKILL');
    for (const name of [names.posix, names.local, names.sample]) {
      cluster.kubectl(['delete', 'storagedomain', name, '--ignore-not-found', '--wait=false']);
      try {
        // Nothing releases its finalizer without the operator.
        cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      } catch {
        // never created, or already gone
      }
      cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${name}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pv', `keyvirt-sd-${name}`, '--ignore-not-found', '--wait=false']);
      deleteDomainJobPods(cluster, name);
    }
    await s.cleanup();
  });

  void it('the API server refuses a posix domain without its block, with a relative path or with ..', () => {
    assert.match(dryRun(domain(`${names.posix}-x`, { type: 'posix' })), /type posix needs spec\.posix with path/);
    assert.match(dryRun(domain(`${names.posix}-x`, { type: 'posix', posix: { path: 'srv/x' } })), /spec\.posix\.path/);
    assert.match(dryRun(domain(`${names.posix}-x`, { type: 'posix', posix: { path: '/srv/../etc' } })), /posix\.path must be a directory below \/, without \. or \.\. segments/);
    assert.match(dryRun(domain(`${names.posix}-x`, { type: 'local', local: { path: '/srv' }, posix: { path: '/srv' } })), /spec\.posix is only allowed when type is posix/);
    assert.equal(dryRun(domain(`${names.posix}-x`, { type: 'posix', posix: { path: '/mnt/cephfs/vmdata' } })), '');
  });

  void it('a posix domain gets a ReadWriteMany hostPath volume on no particular node and becomes Active', async () => {
    apply(cluster, domain(names.posix, { type: 'posix', posix: { path: posixDir }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } }));
    const sd = await waitDomain(names.posix, 'Active', (d) => d.status?.phase === 'Active');
    const pv = `keyvirt-sd-${names.posix}`;
    assert.equal(cluster.kubectl(['get', 'pv', pv, '-o', 'jsonpath={.spec.hostPath.path}']), posixDir);
    assert.equal(cluster.kubectl(['get', 'pv', pv, '-o', 'jsonpath={.spec.hostPath.type}']), 'Directory');
    assert.equal(cluster.kubectl(['get', 'pv', pv, '-o', 'jsonpath={.spec.accessModes}']), '["ReadWriteMany"]');
    assert.equal(cluster.kubectl(['get', 'pv', pv, '-o', 'jsonpath={.spec.nodeAffinity}']), '');
    assert.equal(cluster.kubectl(['get', 'pvc', pv, '-n', OPERATOR_NAMESPACE, '-o', 'jsonpath={.status.phase}']), 'Bound');
    assert.ok(sd.status?.capacity !== undefined && sd.status.free !== undefined, `capacity in status: ${JSON.stringify(sd.status)}`);
    assert.equal(sd.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  });

  void it('a VM on it runs from a qcow2 overlay the operator created there, and is LiveMigratable', async () => {
    const manifest = testVm(s, guest, { name: 'vm-posix' });
    manifest.spec.template.disks = [{ name: 'root', bootOrder: 1, storageDomain: { name: names.posix, size: '64Mi', format: 'qcow2', backingImage: 'base' } }];
    apply(cluster, manifest);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'vm-posix' }, 'Running', (v) => v.status?.phase === 'Running', 300_000);
    assert.deepEqual(condition(vm, 'LiveMigratable'), { ...condition(vm, 'LiveMigratable'), status: 'True', reason: 'Migratable' });
    assert.equal(vm.status?.accelerator, 'tcg');
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', path.join(posixDir, 'images', s.namespace, 'vm-posix', 'root.qcow2')]);
    assert.match(stdout, /"backing-filename": "\.\.\/\.\.\/\.\.\/templates\/base"/);
  });

  void it('on a local domain, or with host-passthrough CPU and a bridge interface, the condition gives the reasons', async () => {
    apply(cluster, domain(names.local, { type: 'local', local: { path: localDir }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } }));
    await waitDomain(names.local, 'Active', (d) => d.status?.phase === 'Active');
    const local = testVm(s, guest, { name: 'vm-local', runStrategy: 'Halted' });
    local.spec.template.disks = [{ name: 'root', storageDomain: { name: names.local, size: '64Mi', format: 'raw' } }];
    apply(cluster, local);
    const notShared = await waitVm(cluster, { namespace: s.namespace, name: 'vm-local' }, 'not LiveMigratable', (v) => condition(v, 'LiveMigratable')?.status === 'False', 240_000);
    assert.equal(condition(notShared, 'LiveMigratable')?.reason, 'DisksNotLiveMigratable');
    assert.match(condition(notShared, 'LiveMigratable')?.message ?? '', new RegExp(`disk root is on StorageDomain ${names.local} of type local, a directory on one node`));

    const pinned = testVm(s, guest, { name: 'vm-pinned', runStrategy: 'Halted' });
    pinned.spec.evictionStrategy = 'Shutdown';
    pinned.spec.template.cpu = { model: 'host-passthrough' };
    pinned.spec.template.interfaces = [{ name: 'lan', binding: 'bridge' }];
    pinned.spec.template.disks = [{ name: 'root', storageDomain: { name: names.posix, size: '64Mi', format: 'raw' } }];
    apply(cluster, pinned);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'vm-pinned' }, 'not LiveMigratable', (v) => condition(v, 'LiveMigratable')?.status === 'False', 240_000);
    const c = condition(vm, 'LiveMigratable');
    assert.equal(c?.reason, 'InterfaceNotLiveMigratable', 'the first cause in the fixed order; the disk on the posix domain is not one');
    assert.match(c?.message ?? '', /^interface lan uses the bridge binding.*; the CPU model is host-passthrough/);
  });

  void it('the npm start sample (examples/vm-local-dev.yaml) runs on its posix domain and is LiveMigratable', async () => {
    // The shipped documents, moved into this suite's scope: its own domain name, directory and namespace.
    const [sdDoc, vmDoc] = readDocuments(path.join(REPO_ROOT, 'examples', 'vm-local-dev.yaml'));
    const sd = StorageDomain.parse(sdDoc);
    const sample = VirtualMachine.parse(vmDoc);
    assert.equal(sd.spec.type, 'posix');
    assert.equal(sample.spec.evictionStrategy, 'LiveMigrate');
    const sampleDir = path.join(s.dir, 'sample');
    await mkdir(path.join(sampleDir, 'templates'), { recursive: true });
    const backing = sample.spec.template.disks[0]?.storageDomain?.backingImage ?? '';
    await copyBootDisk(guest, path.join(sampleDir, 'templates', backing), 'qcow2');
    const spec = StorageDomainSpec.parse({ ...sd.spec, posix: { path: sampleDir } });
    apply(cluster, { apiVersion: sd.apiVersion, kind: sd.kind, metadata: { name: names.sample, labels: { [TEST_RUN_LABEL]: s.runId } }, spec });
    await waitDomain(names.sample, 'Active', (d) => d.status?.phase === 'Active');
    apply(cluster, {
      ...sample,
      metadata: { name: sample.metadata.name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: {
        ...sample.spec,
        template: {
          ...sample.spec.template,
          disks: sample.spec.template.disks.map((d) => (d.storageDomain === undefined ? d : { ...d, storageDomain: { ...d.storageDomain, name: names.sample } })),
        },
      },
    });
    const vm = await waitVm(cluster, { namespace: s.namespace, name: sample.metadata.name ?? '' }, 'Running', (v) => v.status?.phase === 'Running', 300_000);
    assert.deepEqual(condition(vm, 'LiveMigratable'), { ...condition(vm, 'LiveMigratable'), status: 'True', reason: 'Migratable' });
  });
});

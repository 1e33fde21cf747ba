// StorageDomains on the local cluster with the real operator: a `local` domain gets
// its hostPath volume and claim, is measured on a node (the probe pod's termination
// message carries capacity, used and free space into status, and the LowSpace and
// CriticalSpace conditions follow the thresholds) and becomes Active; a VM's
// disk image is created on it by a job pod; maintenance is refused while a running
// VM uses it and entered once the VM stops; no new disks in maintenance; deletion
// waits until the VMs and their disks are gone.
//
// The simulated nodes are processes on this machine, so a hostPath directory is the
// same directory on every node: here it stands in for shared storage, and the test
// reads the images the jobs wrote straight from the host.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseQuantity, StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, type OperatorProcess, operatorKubeconfig, startOperator } from '../operator/operator-process.ts';
import { apply, scratch, type Scratch, testVm, waitVm, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { getStorageDomain, waitStorageDomain } from './storage-domain-watch.ts';

const run = promisify(execFile);

/**
 * The capacity, used and free space a domain's status reports match the filesystem
 * under `dir`. The probe ran df on a node; the node's filesystem is this machine's
 * (shared with other work, so used and free move a little between the probe and this statfs).
 */
async function assertCapacityOfDirectory(sd: StorageDomain, dir: string): Promise<void> {
  const fs = await statfs(dir);
  const shown = { capacity: sd.status?.capacity ?? '', used: sd.status?.used ?? '', free: sd.status?.free ?? '' };
  const capacity = parseQuantity(shown.capacity) ?? -1;
  const used = parseQuantity(shown.used) ?? -1;
  const free = parseQuantity(shown.free) ?? -1;
  const total = fs.blocks * fs.bsize;
  assert.ok(Math.abs(capacity - total) < 2 ** 21, `capacity ${shown.capacity} vs statfs ${total}`);
  assert.ok(used > 0 && free > 0 && used + free <= capacity + 2 ** 21, `used ${shown.used} + free ${shown.free} within ${shown.capacity}`);
  assert.ok(Math.abs(used - (fs.blocks - fs.bfree) * fs.bsize) < 2 ** 30, `used ${shown.used} vs statfs`);
  assert.ok(Math.abs(free - fs.bavail * fs.bsize) < 2 ** 30, `free ${shown.free} vs statfs`);
}

void describe('StorageDomains on the local cluster', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let domainDir: string;
  let name: string;

  const getDomain = (): StorageDomain | undefined => getStorageDomain(cluster, name);
  const waitDomain = (what: string, ok: (sd: StorageDomain) => boolean, timeoutMs?: number): Promise<StorageDomain> => waitStorageDomain(cluster, name, what, ok, timeoutMs);
  const cond = (sd: StorageDomain, type: string): { status: string; reason: string; message: string } | undefined =>
    sd.status?.conditions?.find((c) => c.type === type);
  const domainEvents = (): string[] => {
    const out = cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', `regarding.name=${name}`, '-o', 'json']);
    return z.object({ items: z.array(z.object({ reason: z.string().optional(), note: z.string().optional() })) }).parse(JSON.parse(out)).items.map((e) => `${e.reason ?? ''}: ${e.note ?? ''}`);
  };
  const imageOf = (vm: string, disk: string, format = 'raw'): string => path.join(domainDir, 'images', s.namespace, vm, `${disk}.${format}`);
  const setMaintenance = (on: boolean): void => {
    cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', JSON.stringify({ spec: { maintenance: on } })]);
  };

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-sd');
    name = `sd-${s.runId}`;
    domainDir = path.join(s.dir, 'domain');
    await mkdir(domainDir);
    const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
    operator = startOperator({
      kubeconfig,
      logFile: path.join(s.dir, 'operator.log'),
      identity: `e2e-sd-${s.runId}`,
      leaseName: `keyvirt-e2e-${s.runId}`,
      vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
      extraArgs: ['--storage-domain-selector', `${TEST_RUN_LABEL}=${s.runId}`],
    });
    await operator.healthPort;
  });

  after(async () => {
    try {
      // Without the operator nothing releases finalizers: clear them so nothing is left behind.
      cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}', '--ignore-not-found']);
    } catch {
      // already gone
    }
    operator.kill('SIGTERM');
    await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 20_000))]);
    operator.kill('SIGKILL');
    cluster.kubectl(['delete', 'storagedomain', name, '--ignore-not-found', '--wait=false']);
    deleteDomainJobPods(cluster, name);
    cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${name}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
    cluster.kubectl(['delete', 'pv', `keyvirt-sd-${name}`, '--ignore-not-found', '--wait=false']);
    await s.cleanup();
  });

  void it('a local domain gets its volume, is measured on a node and becomes Active with its capacity in status', async () => {
    const manifest: StorageDomainInput = {
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'StorageDomain',
      metadata: { name, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { type: 'local', local: { path: domainDir }, thresholds: { warningPercent: 1, criticalFreeGiB: 0 } },
    };
    apply(cluster, manifest);
    const sd = await waitDomain('Active', (d) => d.status?.phase === 'Active', 240_000);
    assert.ok(sd.metadata.finalizers?.includes('keyvirt.io/storage-domain-protection'));
    assert.equal(cluster.kubectl(['get', 'pvc', `keyvirt-sd-${name}`, '-n', OPERATOR_NAMESPACE, '-o', 'jsonpath={.status.phase}']), 'Bound');
    assert.equal(cluster.kubectl(['get', 'pv', `keyvirt-sd-${name}`, '-o', 'jsonpath={.spec.hostPath.path}']), domainDir);
    // The probe pod's result reaches the operator through its termination message.
    assert.deepEqual(cond(sd, 'Mounted'), { ...cond(sd, 'Mounted'), status: 'True', reason: 'VolumeReady' });
    await assertCapacityOfDirectory(sd, domainDir);
    const fs = await statfs(domainDir);
    const usedPct = (100 * (fs.blocks - fs.bfree)) / (fs.blocks - fs.bfree + fs.bavail);
    assert.equal(cond(sd, 'LowSpace')?.status, usedPct >= 1 ? 'True' : 'False', `used ${usedPct.toFixed(2)}% against a 1% warning threshold`);
    assert.equal(cond(sd, 'CriticalSpace')?.status, 'False');
    assert.equal(cond(sd, 'Ready')?.status, 'True');

    // A critical threshold above the free space blocks new disks; lowering it again lifts that.
    const setCritical = (gib: number): void => {
      cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', JSON.stringify({ spec: { thresholds: { criticalFreeGiB: gib } } })]);
    };
    setCritical(1_048_576);
    const critical = await waitDomain('CriticalSpace', (d) => cond(d, 'CriticalSpace')?.status === 'True');
    assert.equal(cond(critical, 'CriticalSpace')?.reason, 'BelowCriticalFree');
    assert.deepEqual(cond(critical, 'Ready'), { ...cond(critical, 'Ready'), status: 'False', reason: 'CriticalSpace' });
    setCritical(0);
    await waitDomain('out of CriticalSpace and Ready', (d) => cond(d, 'CriticalSpace')?.status === 'False' && cond(d, 'Ready')?.status === 'True');
  });

  void it('creates a VM disk on the domain and refuses maintenance while the VM runs', async () => {
    // A thin qcow2 overlay on a backing image in the domain's templates/, as the sample VM uses.
    await mkdir(path.join(domainDir, 'templates'));
    await copyBootDisk(guest, path.join(domainDir, 'templates', 'base'), 'qcow2');
    const manifest = testVm(s, guest, { name: 'vm-a', storageDomain: name });
    manifest.spec.template.disks = [{ name: 'root', bootOrder: 1, storageDomain: { name, size: '128Mi', format: 'qcow2', backingImage: 'base' } }];
    apply(cluster, manifest);
    const sd = await waitDomain('lists the disk of vm-a', (d) => (d.status?.disks ?? []).some((x) => x.vmName === 'vm-a' && x.diskName === 'root'));
    assert.equal(sd.status?.diskCount, 1);
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', imageOf('vm-a', 'root', 'qcow2')]);
    const info = z.object({ format: z.string(), 'virtual-size': z.number(), 'backing-filename': z.string().optional() }).parse(JSON.parse(stdout));
    assert.deepEqual(info, { format: 'qcow2', 'virtual-size': 128 * 2 ** 20, 'backing-filename': '../../../templates/base' });

    // Running with the guest agent connected: the guest has booted and will honour a shutdown request.
    const connected = (vm: { status?: { phase?: string; conditions?: { type: string; status: string }[] } }): boolean =>
      vm.status?.phase === 'Running' && vm.status.conditions?.some((c) => c.type === 'AgentConnected' && c.status === 'True') === true;
    await waitVm(cluster, { namespace: s.namespace, name: 'vm-a' }, 'Running with its agent', connected, 300_000);
    setMaintenance(true);
    const preparing = await waitDomain('PreparingForMaintenance', (d) => d.status?.phase === 'PreparingForMaintenance');
    const blocked = cond(preparing, 'MaintenanceBlocked');
    assert.equal(blocked?.status, 'True');
    assert.equal(blocked?.reason, 'VmsRunning');
    assert.match(blocked?.message ?? '', new RegExp(`cannot enter Maintenance: 1 running VM\\(s\\) use the domain: ${s.namespace}/vm-a`));
    assert.equal(cond(preparing, 'Ready')?.status, 'False');
    const events = await eventually('a MaintenanceBlocked event', () => {
      const e = domainEvents().filter((l) => l.startsWith('MaintenanceBlocked:'));
      return e.length > 0 ? e : undefined;
    }, 30_000);
    assert.match(events[0] ?? '', /vm-a/);

    cluster.kubectl(['patch', 'virtualmachine', 'vm-a', '-n', s.namespace, '--type=merge', '-p', '{"spec":{"runStrategy":"Halted"}}']);
    await waitVm(cluster, { namespace: s.namespace, name: 'vm-a' }, 'Stopped', (vm) => vm.status?.phase === 'Stopped', 240_000);
    const maintenance = await waitDomain('Maintenance', (d) => d.status?.phase === 'Maintenance');
    assert.equal(cond(maintenance, 'MaintenanceBlocked')?.status, 'False');
  });

  void it('makes no new disks in maintenance, and makes them once the domain is active again', async () => {
    apply(cluster, testVm(s, guest, { name: 'vm-b', storageDomain: name, runStrategy: 'Halted' }));
    // Give the operator time to act on vm-b (it reconciles the domain on every VM change).
    await waitDomain('counts vm-b', (d) => d.status?.vmCount === 2);
    await new Promise((r) => setTimeout(r, 5000));
    assert.ok(!(getDomain()?.status?.disks ?? []).some((d) => d.vmName === 'vm-b'), 'no disk for vm-b while in maintenance');
    await assert.rejects(stat(imageOf('vm-b', 'root')), { code: 'ENOENT' });
    setMaintenance(false);
    await waitDomain('Active with the disk of vm-b', (d) => d.status?.phase === 'Active' && (d.status.disks ?? []).some((x) => x.vmName === 'vm-b'));
    await stat(imageOf('vm-b', 'root'));
  });

  void it('deletion waits until the VMs and their disks are gone', async () => {
    cluster.kubectl(['delete', 'storagedomain', name, '--wait=false']);
    const blocked = await waitDomain('DeletionBlocked', (d) => cond(d, 'DeletionBlocked')?.status === 'True');
    assert.match(cond(blocked, 'DeletionBlocked')?.message ?? '', /holds 2 disk\(s\)/);
    cluster.kubectl(['delete', 'virtualmachine', 'vm-a', 'vm-b', '-n', s.namespace, '--wait=false']);
    await eventually('the domain gone', () => (getDomain() === undefined ? true : undefined), 180_000, 1000);
    await assert.rejects(stat(imageOf('vm-a', 'root', 'qcow2')), { code: 'ENOENT' });
    await assert.rejects(stat(imageOf('vm-b', 'root')), { code: 'ENOENT' });
    await eventually('the volume gone', () => (cluster.kubectl(['get', 'pv', `keyvirt-sd-${name}`, '--ignore-not-found', '-o', 'name']).trim() === '' ? true : undefined), 60_000);
  });
});

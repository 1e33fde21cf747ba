// Disk images on a StorageDomain against the real API server, the real operator and
// real job pods on the local cluster (ADRs 0103–0105): an image stays while its VM
// exists — dropped from a running VM's spec, relabelled out of the operator's
// selector, or failing the operator's schema (which also holds every other deletion
// on the domain, with events and a gauge) — and goes once its VM is deleted; a VM
// deleted and recreated under its name gets a fresh image that is not removed; forged
// job pods change nothing; a disk past the overcommit limit and a second VM on one
// claim are refused with a reason. The VM's guest runs under TCG on the simulated
// nodes. As in storage-domain.test.ts, the domain is a hostPath directory every
// simulated node shares with this machine, so the test reads the images directly.
import assert from 'node:assert/strict';
import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StorageDomain, type StorageDomainInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, type OperatorProcess, probe, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, condition, eventsFor, getVm, pvcDisk, scratch, type Scratch, testVm, waitVm, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { getStorageDomain, waitStorageDomain } from './storage-domain-watch.ts';

const SUITE = 'disk-retention';

void describe('disk images on a StorageDomain are deleted only once their VM is gone', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let domainDir: string;
  let name: string;

  const getDomain = (): StorageDomain | undefined => getStorageDomain(cluster, name);
  const waitDomain = (what: string, ok: (sd: StorageDomain) => boolean, timeoutMs?: number): Promise<StorageDomain> => waitStorageDomain(cluster, name, what, ok, timeoutMs);
  const listed = (sd: StorageDomain, vm: string, disk = 'root'): { vmUid?: string | undefined } | undefined =>
    sd.status?.disks?.find((d) => d.namespace === s.namespace && d.vmName === vm && d.diskName === disk);
  const imageOf = (vm: string, disk = 'root'): string => path.join(domainDir, 'images', s.namespace, vm, `${disk}.raw`);
  const exists = async (file: string): Promise<boolean> => stat(file).then(() => true, () => false);
  /** The held-deletion gauge of this domain, per reason, from the operator's /metrics. */
  const held = async (): Promise<Map<string, number>> => {
    const { body } = await probe(await operator.healthPort, '/metrics');
    const out = new Map<string, number>();
    for (const line of body.split('\n')) {
      const m = /^keyvirt_storage_disk_deletions_held\{(.*)\} (\d+)$/.exec(line);
      if (m === null || !(m[1] ?? '').includes(`domain="${name}"`)) continue;
      out.set(/reason="([^"]+)"/.exec(m[1] ?? '')?.[1] ?? '', Number(m[2]));
    }
    return out;
  };
  const waitHeld = (what: string, ok: (h: Map<string, number>) => boolean): Promise<Map<string, number>> =>
    eventually(`held deletions: ${what}`, async () => {
      const h = await held();
      return ok(h) ? h : undefined;
    }, 120_000, 1000);
  /** Waits until the operator has reconciled the domain after now: its status reflects a new generation. */
  const reconciled = async (): Promise<StorageDomain> => {
    const before = getDomain()?.metadata.generation ?? 0;
    const warning = 90 + ((before + 1) % 9);
    cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', JSON.stringify({ spec: { thresholds: { warningPercent: warning } } })]);
    return waitDomain('reconciled', (d) => (d.status?.observedGeneration ?? 0) > before);
  };
  const domainDisk = (disk: string): { name: string; storageDomain: { name: string; size: string; format: 'raw' } } => ({ name: disk, storageDomain: { name, size: '64Mi', format: 'raw' } });
  const vmGone = (vm: string): Promise<boolean> => eventually(`VM ${vm} gone`, () => (getVm(cluster, s.namespace, vm) === undefined ? true : undefined), 240_000, 200);

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-dr');
    name = `sd-dr-${s.runId}`;
    domainDir = path.join(s.dir, 'domain');
    await mkdir(domainDir);
    operator = await startSuiteOperator(cluster, s, SUITE);
    const manifest: StorageDomainInput = {
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'StorageDomain',
      metadata: { name, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { type: 'local', local: { path: domainDir }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 }, overcommitPercent: 100 },
    };
    apply(cluster, manifest);
    await waitDomain('Active', (d) => d.status?.phase === 'Active' && d.status.capacity !== undefined, 240_000);
  });

  after(async () => {
    await stopOperator(operator);
    cluster.kubectl(['patch', 'storagedomain', name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    cluster.kubectl(['delete', 'storagedomain', name, '--ignore-not-found', '--wait=false']);
    deleteDomainJobPods(cluster, name);
    cluster.kubectl(['delete', 'pod', `keyvirt-sd-probe-${name}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
    cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${name}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
    cluster.kubectl(['delete', 'pv', `keyvirt-sd-${name}`, '--ignore-not-found', '--wait=false']);
    await s.cleanup();
  });

  void it('a disk removed from a running VM stays; a second VM on the same claim is refused', async () => {
    await pvcDisk(cluster, s, 'shared');
    const runner = testVm(s, guest, { name: 'runner', claimName: 'shared' });
    runner.spec.template.disks = [...(runner.spec.template.disks ?? []), domainDisk('root'), domainDisk('extra')];
    apply(cluster, runner);
    await waitDomain('lists both disks of runner', (d) => listed(d, 'runner', 'root') !== undefined && listed(d, 'runner', 'extra') !== undefined);
    await waitVm(cluster, { namespace: s.namespace, name: 'runner' }, 'Running', (vm) => vm.status?.phase === 'Running', 300_000);

    apply(cluster, testVm(s, guest, { name: 'second', claimName: 'shared' }));
    const blocked = await waitVm(cluster, { namespace: s.namespace, name: 'second' }, 'blocked on the shared claim', (vm) => JSON.stringify(vm.status?.conditions ?? []).includes('ClaimInUse'), 120_000);
    assert.match(JSON.stringify(blocked.status?.conditions), new RegExp(`PersistentVolumeClaim ${s.namespace}/shared is used by VirtualMachine ${s.namespace}/runner`));
    assert.equal(blocked.status?.launcherPod ?? '', '');
    cluster.kubectl(['delete', 'virtualmachine', 'second', '-n', s.namespace, '--wait=false']);

    const vm = getVm(cluster, s.namespace, 'runner');
    const extra = vm?.spec.template.disks.findIndex((d) => d.name === 'extra') ?? -1;
    assert.ok(extra >= 0);
    cluster.kubectl(['patch', 'virtualmachine', 'runner', '-n', s.namespace, '--type=json', '-p', JSON.stringify([{ op: 'remove', path: `/spec/template/disks/${extra}` }])]);
    await waitHeld('the dropped disk is held as Detached', (h) => (h.get('Detached') ?? 0) >= 1);
    const sd = await reconciled();
    assert.ok(listed(sd, 'runner', 'extra') !== undefined, 'still listed');
    assert.ok(await exists(imageOf('runner', 'extra')), 'the image is still on the domain');
  });

  void it('a VM relabelled out of the selector keeps its disk', async () => {
    apply(cluster, testVm(s, guest, { name: 'relabelled', storageDomain: name, runStrategy: 'Halted' }));
    await waitDomain('lists the disk of relabelled', (d) => listed(d, 'relabelled') !== undefined);
    const before = (await held()).get('Detached') ?? 0;
    cluster.kubectl(['label', 'virtualmachine', 'relabelled', '-n', s.namespace, `${TEST_RUN_LABEL}=elsewhere`, '--overwrite']);
    await waitHeld('the relabelled VM\'s disk is held', (h) => (h.get('Detached') ?? 0) > before);
    const sd = await reconciled();
    assert.ok(listed(sd, 'relabelled') !== undefined);
    assert.ok(await exists(imageOf('relabelled')));
  });

  void it('a VM the operator cannot parse keeps its disk and holds every deletion on the domain until it parses again', async () => {
    apply(cluster, testVm(s, guest, { name: 'skewed', storageDomain: name, runStrategy: 'Halted' }));
    apply(cluster, testVm(s, guest, { name: 'doomed', storageDomain: name, runStrategy: 'Halted' }));
    await waitDomain('lists skewed and doomed', (d) => listed(d, 'skewed') !== undefined && listed(d, 'doomed') !== undefined);
    // The API server takes a lower-case RFC 3339 time; the operator's schema does not (as a newer or older schema might differ).
    const condition = (time: string): string => JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'False', reason: 'Stopped', message: 'written by another version', lastTransitionTime: time }] } });
    cluster.kubectl(['patch', 'virtualmachine', 'skewed', '-n', s.namespace, '--subresource=status', '--type=merge', '-p', condition('2026-01-01t00:00:00z')]);
    // A restarted (or rolled back) operator lists the VMs afresh: the skewed one is not in its cache.
    await stopOperator(operator);
    operator = await startSuiteOperator(cluster, s, SUITE);
    cluster.kubectl(['delete', 'virtualmachine', 'doomed', '-n', s.namespace, '--wait=false']);
    await vmGone('doomed');
    await waitHeld('OwnerUnparsable and DomainHeld', (h) => (h.get('OwnerUnparsable') ?? 0) >= 1 && (h.get('DomainHeld') ?? 0) >= 1);
    const sd = await reconciled();
    assert.ok(listed(sd, 'doomed') !== undefined, 'the deleted VM\'s disk is held while another VM fails the schema');
    assert.ok(await exists(imageOf('doomed')));
    assert.ok(await exists(imageOf('skewed')));
    const domainEvents = cluster.kubectl(['get', 'events.events.k8s.io', '-n', 'default', '--field-selector', `regarding.name=${name}`, '-o', 'json']);
    const notes = z.object({ items: z.array(z.object({ reason: z.string().optional(), note: z.string().optional() })) }).parse(JSON.parse(domainEvents)).items;
    assert.ok(notes.some((e) => e.reason === 'DiskDeletionBlocked' && (e.note ?? '').includes(`VirtualMachine ${s.namespace}/skewed does not match the operator's schema`)), JSON.stringify(notes));
    await eventually('a SchemaMismatch event on the VM', () => (eventsFor(cluster, s.namespace, 'skewed').some((e) => e.startsWith('SchemaMismatch')) ? true : undefined), 30_000);

    cluster.kubectl(['patch', 'virtualmachine', 'skewed', '-n', s.namespace, '--subresource=status', '--type=merge', '-p', condition('2026-01-01T00:00:00Z')]);
    await waitDomain('the deleted VM\'s disk gone once nothing fails the schema', (d) => listed(d, 'doomed') === undefined);
    assert.equal(await exists(imageOf('doomed')), false);
    assert.ok(await exists(imageOf('skewed')), 'the VM that exists keeps its disk');
  });

  void it('a VM deleted and recreated under its name gets a fresh image, which stays', async () => {
    apply(cluster, testVm(s, guest, { name: 'phoenix', storageDomain: name, runStrategy: 'Halted' }));
    const first = await waitDomain('lists phoenix', (d) => listed(d, 'phoenix') !== undefined);
    const oldUid = listed(first, 'phoenix')?.vmUid;
    assert.ok(oldUid !== undefined);
    const marker = Buffer.from('OLD-DATA');
    const fh = await open(imageOf('phoenix'), 'r+');
    await fh.write(marker, 0, marker.length, 0);
    await fh.close();
    cluster.kubectl(['delete', 'virtualmachine', 'phoenix', '-n', s.namespace, '--wait=false']);
    await vmGone('phoenix');
    apply(cluster, testVm(s, guest, { name: 'phoenix', storageDomain: name, runStrategy: 'Halted' }));
    const newUid = getVm(cluster, s.namespace, 'phoenix')?.metadata.uid;
    assert.ok(newUid !== undefined && newUid !== oldUid);
    await waitDomain('lists phoenix for its new UID', (d) => listed(d, 'phoenix')?.vmUid === newUid);
    const sd = await reconciled();
    assert.equal(listed(sd, 'phoenix')?.vmUid, newUid);
    const head = Buffer.alloc(marker.length);
    const check = await open(imageOf('phoenix'), 'r');
    await check.read(head, 0, head.length, 0);
    await check.close();
    assert.deepEqual(head, Buffer.alloc(marker.length), 'a fresh image, not the old VM\'s');
  });

  void it('forged job pods — elsewhere with the domain as owner, or in the operator\'s namespace without it — change nothing', async () => {
    const sd = getDomain();
    const uid = sd?.metadata.uid ?? '';
    const capacity = sd?.status?.capacity;
    const forgedResult = JSON.stringify({ op: 'probe', capacityBytes: 2 ** 50, usedBytes: 0, freeBytes: 2 ** 50 });
    const pod = (namespace: string, owned: boolean): unknown => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `keyvirt-sd-probe-${name}`,
        namespace,
        labels: { 'app.kubernetes.io/component': 'storage-job', 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'keyvirt.io/storage-job': 'probe' },
        ...(owned ? { ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name, uid, controller: true }] } : {}),
      },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        containers: [{ name: 'storage', image: 'keyvirt/launcher:test', command: ['sh', '-c', `printf '%s' '${forgedResult}' > /dev/termination-log`] }],
      },
    });
    apply(cluster, pod(s.namespace, true));
    // The real probe pod of that name comes and goes in the operator's namespace: take the name while it is free.
    await eventually('a forged pod in the operator namespace', () => {
      try {
        cluster.kubectl(['create', '-f', '-'], JSON.stringify(pod(OPERATOR_NAMESPACE, false)));
        return true;
      } catch {
        return undefined;
      }
    }, 120_000, 500);
    for (const namespace of [s.namespace, OPERATOR_NAMESPACE]) {
      await eventually(`forged pod in ${namespace} Succeeded`, () => (cluster.kubectl(['get', 'pod', `keyvirt-sd-probe-${name}`, '-n', namespace, '-o', 'jsonpath={.status.phase}']) === 'Succeeded' ? true : undefined), 120_000);
    }
    const after = await reconciled();
    assert.equal(after.status?.capacity, capacity, 'capacity unchanged');
    assert.notEqual(after.status?.capacity, '1Pi');
    assert.equal(cluster.kubectl(['get', 'pod', `keyvirt-sd-probe-${name}`, '-n', s.namespace, '-o', 'jsonpath={.status.phase}']), 'Succeeded', 'a pod in another namespace is never touched');
    cluster.kubectl(['delete', 'pod', `keyvirt-sd-probe-${name}`, '-n', s.namespace, '--wait=false']);
    cluster.kubectl(['delete', 'pod', `keyvirt-sd-probe-${name}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
  });

  void it('a thin disk past the overcommit limit is not created and the VM says why', async () => {
    const huge = testVm(s, guest, { name: 'huge', runStrategy: 'Always' });
    huge.spec.template.disks = [{ name: 'root', storageDomain: { name, size: '1000Gi', format: 'raw' } }];
    apply(cluster, huge);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'huge' }, 'blocked as Overcommitted', (v) => JSON.stringify(v.status?.conditions ?? []).includes('Overcommitted'), 120_000);
    assert.match(JSON.stringify(vm.status?.conditions), /disk root \(1000Gi\) would bring the disks on the domain to [0-9.]+Gi, over its limit of [0-9.]+Gi \(100% of [0-9.]+Gi\)/);
    assert.equal(vm.status?.launcherPod ?? '', '');
    const sd = getDomain();
    assert.equal(sd?.status?.refusedDisks?.find((r) => r.vmName === 'huge')?.reason, 'Overcommitted');
    assert.equal(await exists(imageOf('huge')), false);
    assert.ok(eventsFor(cluster, s.namespace, 'huge').some((e) => e.startsWith('DiskNotCreated')));
    assert.equal(condition(vm, 'Ready')?.status ?? 'False', 'False');
    cluster.kubectl(['delete', 'virtualmachine', 'huge', '-n', s.namespace, '--wait=false']);
  });

  void it('a deleted VM\'s images go, the disk it had dropped included, once its launcher has finished', async () => {
    cluster.kubectl(['delete', 'virtualmachine', 'runner', '-n', s.namespace, '--wait=false']);
    await vmGone('runner');
    await waitDomain('runner\'s disks unlisted', (d) => listed(d, 'runner', 'root') === undefined && listed(d, 'runner', 'extra') === undefined, 180_000);
    assert.equal(await exists(imageOf('runner', 'root')), false);
    assert.equal(await exists(imageOf('runner', 'extra')), false);
  });
});

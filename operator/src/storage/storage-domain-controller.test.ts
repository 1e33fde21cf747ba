// The controller's decisions with in-memory caches and an API fake that records
// writes: which jobs it starts, when it refuses to, and what it writes to status.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StorageDomain, VirtualMachine, type StorageDomainInput } from '@keyvirt/crds';
import { pino } from 'pino';
import type { Pod } from '../runtime/core-schemas.ts';
import type { RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { StorageDomainController } from './storage-domain-controller.ts';

const GiB = 2 ** 30;
const log = pino({ level: 'silent' });

function domain(spec: Partial<StorageDomainInput['spec']> = {}, status?: StorageDomainInput['status']): StorageDomain {
  return StorageDomain.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name: 'sd', uid: 'sd-uid', generation: 1, resourceVersion: '1', finalizers: ['keyvirt.io/storage-domain-protection'] },
    spec: { type: 'local', local: { path: '/srv/sd' }, thresholds: { warningPercent: 80, criticalFreeGiB: 5 }, ...spec },
    ...(status === undefined ? {} : { status }),
  });
}

function vm(name: string, phase?: string): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', uid: `${name}-uid` },
    spec: { runStrategy: 'Always', template: { memory: { size: '1Gi' }, disks: [{ name: 'root', storageDomain: { name: 'sd', size: '10Gi' } }] } },
    ...(phase === undefined ? {} : { status: { phase } }),
  });
}

/** The labels and controller reference every storage job pod of domain `sd` carries. */
function jobMeta(name: string, namespace = 'keyvirt-system'): Pod['metadata'] {
  return {
    name,
    namespace,
    uid: `uid-${name}`,
    labels: { 'app.kubernetes.io/component': 'storage-job', 'app.kubernetes.io/managed-by': 'keyvirt-operator' },
    ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'sd', uid: 'sd-uid', controller: true }],
  };
}

function finishedJob(name: string, result: object | undefined, phase = 'Succeeded', namespace = 'keyvirt-system'): Pod {
  return {
    metadata: jobMeta(name, namespace),
    spec: { containers: [{ name: 'storage' }] },
    status: { phase, containerStatuses: [{ name: 'storage', state: { terminated: { exitCode: phase === 'Succeeded' ? 0 : 1, message: result === undefined ? 'boom' : JSON.stringify(result) } } }] },
  };
}

interface World {
  sd: StorageDomain;
  /** The operator's cache. */
  vms: VirtualMachine[];
  /** What the API server holds (raw), when it differs from the cache. */
  apiVms?: unknown[];
  /** Pods labelled for a VM (namespace/vm → phases), as the API server lists them. */
  vmPods?: Record<string, string[]>;
  pods: Pod[];
  created: { path: string; body: { metadata: { name: string }; spec?: { containers?: { env?: { name: string; value: string }[] }[] } } }[];
  deleted: string[];
  statuses: { phase?: string; disks?: unknown[]; capacity?: string; conditions?: { type: string; status: string }[] }[];
  events: RecordedEvent[];
}

function harness(world: World, clock = new ManualClock(1_000_000)): { reconcile: () => Promise<{ requeueAfterMs?: number }> } {
  const controller = new StorageDomainController({
    caches: { domain: () => world.sd, vms: () => world.vms, jobPods: () => world.pods },
    client: {
      get: (path: string) => {
        const vmPath = /\/namespaces\/([^/]+)\/virtualmachines\/([^/]+)$/.exec(path);
        if (vmPath !== null) {
          const found = (world.apiVms ?? world.vms).find((v) => {
            const m = (v as { metadata: { name: string; namespace?: string } }).metadata;
            return m.namespace === vmPath[1] && m.name === vmPath[2];
          });
          return found === undefined ? Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path })) : Promise.resolve(found);
        }
        if (path.includes('/persistentvolumeclaims/keyvirt-disk-')) return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
        if (path.includes('/persistentvolumeclaims/')) return Promise.resolve({ metadata: { name: 'keyvirt-sd-sd' }, status: { phase: 'Bound' } });
        if (path.includes('/persistentvolumes/')) return Promise.resolve({ metadata: { name: 'keyvirt-sd-sd' } });
        if (path.includes('/storageclasses/fast')) return Promise.resolve({ metadata: { name: 'fast' } });
        return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
      },
      request: (_method: string, path: string, options?: { query?: Record<string, string | number | boolean | undefined> }) => {
        const namespace = /\/namespaces\/([^/]+)\/pods$/.exec(path)?.[1] ?? '';
        const vmName = String(options?.query?.labelSelector ?? '').replace('keyvirt.io/vm=', '');
        const phases = world.vmPods?.[`${namespace}/${vmName}`] ?? [];
        return Promise.resolve({ items: phases.map((phase, i) => ({ metadata: { name: `launcher-${vmName}-${i}` }, status: { phase } })) });
      },
      create: (path: string, body: unknown) => {
        const typed = body as World['created'][number]['body'];
        world.created.push({ path, body: typed });
        return Promise.resolve({ ...typed, metadata: { ...typed.metadata, uid: `uid-${typed.metadata.name}` } });
      },
      patch: (path: string, body: unknown) => {
        if (path.endsWith('/status')) world.statuses.push((body as { value: World['statuses'][number] }[])[0]?.value ?? {});
        return Promise.resolve({});
      },
      delete: (path: string) => {
        world.deleted.push(path);
        return Promise.resolve({});
      },
    },
    events: { record: (_t, e) => Promise.resolve(void world.events.push(e)) },
    clock,
    settings: { namespace: 'keyvirt-system', image: 'keyvirt/launcher:test', probeIntervalMs: 60_000, retryAfterFailureMs: 30_000 },
  });
  const ctx = { signal: new AbortController().signal, log, reconcileId: 't' };
  return { reconcile: () => controller.reconcile(ctx, 'sd') };
}

function emptyWorld(sd: StorageDomain, vms: VirtualMachine[] = []): World {
  return { sd, vms, pods: [], created: [], deleted: [], statuses: [], events: [] };
}

const jobNames = (w: World): string[] => w.created.filter((c) => c.path.endsWith('/pods')).map((c) => c.body.metadata.name);
const probe = { op: 'probe', capacityBytes: 100 * GiB, usedBytes: 10 * GiB, freeBytes: 90 * GiB };

void test('probes first, then becomes Active with the measured capacity and creates wanted disks', async () => {
  const w = emptyWorld(domain(), [vm('web-1')]);
  const h = harness(w);
  await h.reconcile();
  assert.deepEqual(jobNames(w), ['keyvirt-sd-probe-sd'], 'only the probe before the domain is measured');
  assert.equal(w.statuses.at(-1)?.phase, 'Activating');
  w.pods = [finishedJob('keyvirt-sd-probe-sd', probe)];
  await h.reconcile();
  const status = w.statuses.at(-1);
  assert.equal(status?.phase, 'Active');
  assert.equal(status?.capacity, '100Gi');
  assert.ok(w.deleted.some((p) => p.endsWith('/pods/keyvirt-sd-probe-sd')), 'the finished probe pod is removed');
  const diskJob = w.created.find((c) => c.body.metadata.name.startsWith('keyvirt-disk-create-'));
  assert.ok(diskJob !== undefined, 'a disk job once Active');
  const env = Object.fromEntries((diskJob.body.spec?.containers?.[0]?.env ?? []).map((e) => [e.name, e.value]));
  assert.deepEqual(env, { KEYVIRT_OP: 'create', KEYVIRT_IMAGE: 'images/prod/web-1/root.qcow2', KEYVIRT_FORMAT: 'qcow2', KEYVIRT_SIZE: String(10 * GiB) });
  w.pods = [finishedJob(diskJob.body.metadata.name, { ...probe, op: 'create', created: true })];
  await h.reconcile();
  assert.deepEqual(w.statuses.at(-1)?.disks, [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi', vmUid: 'web-1-uid' }]);
});

void test('no new disks below the critical free space or in maintenance', async () => {
  for (const [name, sd, result] of [
    ['critical', domain(), { ...probe, usedBytes: 96 * GiB, freeBytes: 4 * GiB }],
    ['maintenance', domain({ maintenance: true }), probe],
  ] as const) {
    const w = emptyWorld(sd, [vm('web-1')]);
    w.pods = [finishedJob('keyvirt-sd-probe-sd', result)];
    await harness(w).reconcile();
    assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], name);
  }
});

void test('maintenance waits for running VMs with a condition and one warning event', async () => {
  const listed = { phase: 'Active' as const, disks: [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi' }], capacity: '100Gi', used: '10Gi', free: '90Gi' };
  const w = emptyWorld(domain({ maintenance: true }, listed), [vm('web-1', 'Running')]);
  const h = harness(w);
  await h.reconcile();
  const blocked = w.statuses.at(-1);
  assert.equal(blocked?.phase, 'PreparingForMaintenance');
  assert.equal(blocked?.conditions?.find((c) => c.type === 'MaintenanceBlocked')?.status, 'True');
  assert.deepEqual(w.events.map((e) => e.reason), ['PreparingForMaintenance', 'MaintenanceBlocked']);
  w.vms = [vm('web-1', 'Stopped')];
  await h.reconcile();
  assert.equal(w.statuses.at(-1)?.phase, 'Maintenance');
  assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], 'the stopped VM keeps its disk');
});

void test('a deleted domain keeps its finalizer while disks remain, deletes them once their VMs are gone, then lets go', async () => {
  const listed = { phase: 'Active' as const, disks: [{ namespace: 'prod', vmName: 'web-1', diskName: 'root' }], capacity: '100Gi', used: '10Gi', free: '90Gi' };
  const sd = domain({}, listed);
  const deleting = StorageDomain.parse({ ...sd, metadata: { ...sd.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } });
  const w = emptyWorld(deleting, [vm('web-1', 'Stopped')]);
  const h = harness(w);
  await h.reconcile();
  assert.equal(w.statuses.at(-1)?.conditions?.find((c) => c.type === 'DeletionBlocked')?.status, 'True');
  assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], 'the disk of an existing VM stays');
  w.vms = [];
  await h.reconcile();
  const deleteJob = jobNames(w).find((n) => n.startsWith('keyvirt-disk-delete-'));
  assert.ok(deleteJob !== undefined);
  assert.ok(!w.deleted.some((p) => p.includes('/persistentvolumes/')), 'the volume stays while the disk exists');
  w.pods = [finishedJob(deleteJob, { ...probe, op: 'delete' })];
  await h.reconcile();
  assert.ok(w.deleted.some((p) => p.endsWith('/persistentvolumes/keyvirt-sd-sd')));
  assert.ok(w.deleted.some((p) => p.endsWith('/persistentvolumeclaims/keyvirt-sd-sd')));
});

void test('a failed disk job is reported once and retried after the back-off', async () => {
  const listed = { phase: 'Active' as const, capacity: '100Gi', used: '10Gi', free: '90Gi' };
  const clock = new ManualClock(1_000_000);
  const w = emptyWorld(domain({}, listed), [vm('web-1')]);
  const h = harness(w, clock);
  w.pods = [finishedJob('keyvirt-sd-probe-sd', probe)];
  await h.reconcile();
  const job = jobNames(w).find((n) => n.startsWith('keyvirt-disk-create-')) ?? '';
  w.pods = [finishedJob(job, undefined, 'Failed')];
  const created = jobNames(w).length;
  const result = await h.reconcile();
  assert.deepEqual(w.events.filter((e) => e.reason === 'DiskCreateFailed').map((e) => e.note), ['disk prod/web-1/root: boom']);
  w.pods = [];
  await h.reconcile();
  assert.equal(jobNames(w).length, created, 'not retried before the back-off');
  assert.ok((result.requeueAfterMs ?? 0) > 0 && (result.requeueAfterMs ?? 0) <= 30_000);
  clock.advance(30_001);
  await h.reconcile();
  assert.equal(jobNames(w).filter((n) => n === job).length, 2, 'retried after the back-off');
});

void test('a probe pod that cannot be scheduled says why in the Ready and Mounted conditions', async () => {
  const w = emptyWorld(domain({ local: { path: '/srv/sd', nodeName: 'gone-node' } }));
  w.pods = [
    {
      metadata: jobMeta('keyvirt-sd-probe-sd'),
      spec: { containers: [{ name: 'storage' }] },
      status: {
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector." }],
      },
    },
  ];
  await harness(w).reconcile();
  const status = w.statuses.at(-1) as { phase?: string; conditions?: { type: string; status: string; message: string }[] } | undefined;
  assert.equal(status?.phase, 'Activating');
  const mounted = status?.conditions?.find((c) => c.type === 'Mounted');
  assert.equal(mounted?.status, 'Unknown');
  assert.match(mounted?.message ?? '', /the probe pod cannot be scheduled: 0\/2 nodes are available/);
  assert.match(status?.conditions?.find((c) => c.type === 'Ready')?.message ?? '', /cannot be scheduled/);
});

void test('storageClass domains: one claim per disk in the VM namespace, the image made by a job there, the claim deleted with the VM', async () => {
  const w = emptyWorld(domain({ type: 'storageClass', local: undefined, storageClass: { name: 'fast' } }), [vm('web-1')]);
  const h = harness(w);
  await h.reconcile();
  assert.equal(w.statuses.at(-1)?.phase, 'Active');
  const claim = w.created.find((c) => c.path === '/api/v1/namespaces/prod/persistentvolumeclaims');
  assert.equal(claim?.body.metadata.name, 'keyvirt-disk-web-1-root');
  const job = w.created.find((c) => c.path === '/api/v1/namespaces/prod/pods');
  assert.ok(job !== undefined, 'the disk job runs in the VM namespace');
  assert.match(JSON.stringify(job.body), /"claimName":"keyvirt-disk-web-1-root"/);
  assert.equal(jobNames(w).filter((n) => n.startsWith('keyvirt-sd-probe')).length, 0, 'no domain-wide probe');
  w.pods = [finishedJob(job.body.metadata.name, { ...probe, op: 'create', created: true }, 'Succeeded', 'prod')];
  await h.reconcile();
  assert.deepEqual(w.statuses.at(-1)?.disks, [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi', vmUid: 'web-1-uid' }]);
  assert.ok(w.deleted.includes(`/api/v1/namespaces/prod/pods/${job.body.metadata.name}`));
  w.pods = [];
  w.vms = [];
  await h.reconcile();
  assert.ok(w.deleted.includes('/api/v1/namespaces/prod/persistentvolumeclaims/keyvirt-disk-web-1-root'));
  assert.deepEqual(w.statuses.at(-1)?.disks, []);
});

const active = { phase: 'Active' as const, capacity: '100Gi', used: '10Gi', free: '90Gi' };
const listedRoot = (vmName: string, vmUid: string): { namespace: string; vmName: string; diskName: string; size: string; vmUid: string } => ({ namespace: 'prod', vmName, diskName: 'root', size: '10Gi', vmUid });
const probed = (w: World): void => {
  w.pods = [finishedJob('keyvirt-sd-probe-sd', probe)];
};

void test('an image stays while its VM exists in the API server, whatever the cache says', async () => {
  const cases: [string, unknown[], VirtualMachine[]][] = [
    ['a VM relabelled out of the selector (not cached)', [vm('web-1')], []],
    ['a disk removed from a running VM', [vm('web-1', 'Running')], [VirtualMachine.parse({ ...vm('web-1', 'Running'), spec: { ...vm('web-1').spec, template: { ...vm('web-1').spec.template, disks: [] } } })]],
  ];
  for (const [name, apiVms, cached] of cases) {
    const w = emptyWorld(domain({}, { ...active, disks: [listedRoot('web-1', 'web-1-uid')] }), cached);
    w.apiVms = apiVms;
    probed(w);
    await harness(w).reconcile();
    assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], name);
    assert.deepEqual(w.statuses.at(-1)?.disks, [listedRoot('web-1', 'web-1-uid')], name);
  }
});

void test('a VM that fails the schema keeps its image, holds every deletion on the domain, and says so once', async () => {
  const broken = { ...vm('web-1'), spec: { runStrategy: 'Sometimes', template: vm('web-1').spec.template } };
  const w = emptyWorld(domain({}, { ...active, disks: [listedRoot('web-1', 'web-1-uid'), listedRoot('gone', 'gone-uid')] }), []);
  w.apiVms = [broken];
  probed(w);
  const h = harness(w);
  await h.reconcile();
  await h.reconcile();
  assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], 'not even the disk of the deleted VM goes');
  assert.deepEqual(w.events.filter((e) => e.reason === 'DiskDeletionBlocked' || e.reason === 'SchemaMismatch').map((e) => e.reason), ['DiskDeletionBlocked', 'SchemaMismatch']);
  assert.match(w.events.find((e) => e.reason === 'SchemaMismatch')?.note ?? '', /VirtualMachine prod\/web-1 does not match the operator's schema \(spec\.runStrategy: /);
  w.apiVms = [vm('web-1')];
  await h.reconcile();
  assert.ok(jobNames(w).some((n) => n.startsWith('keyvirt-disk-delete-')), 'once it parses, the deleted VM\'s disk goes');
});

void test('the image of a deleted VM goes only after its launcher pods finished', async () => {
  const w = emptyWorld(domain({}, { ...active, disks: [listedRoot('web-1', 'web-1-uid')] }), []);
  w.apiVms = [];
  w.vmPods = { 'prod/web-1': ['Running'] };
  probed(w);
  const h = harness(w);
  await h.reconcile();
  assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-')), [], 'QEMU may still hold it open');
  w.vmPods = { 'prod/web-1': ['Succeeded'] };
  await h.reconcile();
  assert.equal(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-delete-')).length, 1);
});

void test('a VM deleted and recreated under its name: the old image is deleted first, then the new one is made and kept', async () => {
  const recreated = VirtualMachine.parse({ ...vm('web-1'), metadata: { ...vm('web-1').metadata, uid: 'new-uid' } });
  const w = emptyWorld(domain({}, { ...active, disks: [listedRoot('web-1', 'old-uid')] }), [recreated]);
  probed(w);
  const h = harness(w);
  await h.reconcile();
  const deleteJob = jobNames(w).find((n) => n.startsWith('keyvirt-disk-delete-'));
  assert.ok(deleteJob !== undefined);
  assert.deepEqual(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-create-')), [], 'no create while the old image exists');
  assert.deepEqual((w.statuses.at(-1) as { refusedDisks?: { reason: string }[] }).refusedDisks?.map((r) => r.reason), ['PreviousImagePending']);
  w.pods = [finishedJob(deleteJob, { ...probe, op: 'delete' })];
  await h.reconcile();
  const createJob = jobNames(w).find((n) => n.startsWith('keyvirt-disk-create-'));
  assert.ok(createJob !== undefined, 'the new image is made once the old one is gone');
  assert.notEqual(createJob.slice('keyvirt-disk-create-'.length), deleteJob.slice('keyvirt-disk-delete-'.length));
  w.pods = [finishedJob(createJob, { ...probe, op: 'create', created: true })];
  await h.reconcile();
  await h.reconcile();
  assert.deepEqual(w.statuses.at(-1)?.disks, [listedRoot('web-1', 'new-uid')]);
  assert.equal(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-delete-')).length, 1, 'the new image is never deleted');
});

void test('thin disks past the overcommit limit are refused with a reason in status and one event on the VM', async () => {
  const big = (name: string, size: string): VirtualMachine =>
    VirtualMachine.parse({ ...vm(name), spec: { ...vm(name).spec, template: { ...vm(name).spec.template, disks: [{ name: 'root', storageDomain: { name: 'sd', size } }] } } });
  const w = emptyWorld(domain({ overcommitPercent: 150 }, active), [big('web-1', '100Gi'), big('web-2', '100Gi')]);
  probed(w);
  const h = harness(w);
  await h.reconcile();
  await h.reconcile();
  assert.equal(new Set(jobNames(w).filter((n) => n.startsWith('keyvirt-disk-create-'))).size, 1, 'one of the two fits under 150Gi');
  const refused = (w.statuses.at(-1) as { refusedDisks?: { vmName: string; reason: string; message: string }[] }).refusedDisks;
  assert.equal(refused?.length, 1);
  assert.equal(refused?.[0]?.reason, 'Overcommitted');
  assert.match(refused?.[0]?.message ?? '', /over its limit of 150Gi \(150% of 100Gi\)/);
  assert.equal(w.events.filter((e) => e.reason === 'DiskNotCreated').length, 1);
});

void test('a job pod with the predictable name elsewhere, or without the domain as owner, changes nothing', async () => {
  const forged = (meta: Partial<Pod['metadata']>): Pod => ({ ...finishedJob('keyvirt-sd-probe-sd', { ...probe, capacityBytes: 1, usedBytes: 0, freeBytes: 1 }), metadata: { ...jobMeta('keyvirt-sd-probe-sd'), ...meta } });
  const w = emptyWorld(domain());
  w.pods = [forged({ namespace: 'tenant' }), forged({ ownerReferences: [] })];
  const h = harness(w);
  await h.reconcile();
  assert.equal(w.statuses.at(-1)?.phase, 'Activating');
  assert.equal(w.statuses.at(-1)?.capacity, undefined);
  assert.ok(!w.deleted.some((p) => p.includes('/namespaces/tenant/')), 'a pod in another namespace is never deleted');
});

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

function finishedJob(name: string, result: object | undefined, phase = 'Succeeded'): Pod {
  return {
    metadata: { name, namespace: 'keyvirt-system' },
    spec: { containers: [{ name: 'storage' }] },
    status: { phase, containerStatuses: [{ name: 'storage', state: { terminated: { exitCode: phase === 'Succeeded' ? 0 : 1, message: result === undefined ? 'boom' : JSON.stringify(result) } } }] },
  };
}

interface World {
  sd: StorageDomain;
  vms: VirtualMachine[];
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
        if (path.includes('/persistentvolumeclaims/keyvirt-disk-')) return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
        if (path.includes('/persistentvolumeclaims/')) return Promise.resolve({ metadata: { name: 'keyvirt-sd-sd' }, status: { phase: 'Bound' } });
        if (path.includes('/persistentvolumes/')) return Promise.resolve({ metadata: { name: 'keyvirt-sd-sd' } });
        if (path.includes('/storageclasses/fast')) return Promise.resolve({ metadata: { name: 'fast' } });
        return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
      },
      create: (path: string, body: unknown) => {
        world.created.push({ path, body: body as World['created'][number]['body'] });
        return Promise.resolve(body);
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
  assert.deepEqual(w.statuses.at(-1)?.disks, [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi' }]);
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
      metadata: { name: 'keyvirt-sd-probe-sd', namespace: 'keyvirt-system' },
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
  w.pods = [{ ...finishedJob(job.body.metadata.name, { ...probe, op: 'create', created: true }), metadata: { name: job.body.metadata.name, namespace: 'prod' } }];
  await h.reconcile();
  assert.deepEqual(w.statuses.at(-1)?.disks, [{ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi' }]);
  assert.ok(w.deleted.includes(`/api/v1/namespaces/prod/pods/${job.body.metadata.name}`));
  w.pods = [];
  w.vms = [];
  await h.reconcile();
  assert.ok(w.deleted.includes('/api/v1/namespaces/prod/persistentvolumeclaims/keyvirt-disk-web-1-root'));
  assert.deepEqual(w.statuses.at(-1)?.disks, []);
});

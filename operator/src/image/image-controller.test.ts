// The import job's report survives a status write that fails: the ended job is removed
// only once its outcome is in the status, so the next reconcile reads the report again
// instead of finding no job and importing anew.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { StorageDomain, type VirtualMachineImage, type VirtualMachineImageStatus } from '@keyvirt/crds';
import { podSchema, type Pod } from '../runtime/core-schemas.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ImageController } from './image-controller.ts';

const log = pino({ level: 'silent' });
const result = { op: 'import', format: 'qcow2', sourceFormat: 'raw', virtualSize: 1 << 30, allocatedBytes: 4096, sourceBytes: 1 << 30, durationMs: 4200, capacityBytes: 1, usedBytes: 1, freeBytes: 0 };

const domain = StorageDomain.parse({
  apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', metadata: { name: 'images', uid: 'sd-uid' },
  spec: { type: 'posix', posix: { path: '/var/lib/keyvirt/images' } }, status: { phase: 'Active' },
});

const image: VirtualMachineImage = {
  apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachineImage',
  metadata: { name: 'debian', namespace: 'team', uid: 'img-uid', generation: 1, resourceVersion: '10', finalizers: ['keyvirt.io/image-file'] },
  spec: { storageDomain: 'images', format: 'qcow2', source: { http: { url: 'http://images.example/d.raw' } } },
};

interface Calls { creates: unknown[]; deletes: string[]; statusPatches: number }

function harness(statusFailures: number): { controller: ImageController; calls: Calls; pods: Pod[]; statuses: VirtualMachineImageStatus[] } {
  const calls: Calls = { creates: [], deletes: [], statusPatches: 0 };
  const pods: Pod[] = [];
  const statuses: VirtualMachineImageStatus[] = [];
  let failuresLeft = statusFailures;
  const controller = new ImageController({
    caches: { image: () => image, domain: () => domain, jobPods: () => pods, vmsUsing: () => [] },
    client: {
      create: (path: string, body: unknown) => {
        calls.creates.push(body);
        pods.push(podSchema.parse({ ...(body as object), metadata: { ...(body as { metadata: object }).metadata, uid: `pod-${calls.creates.length}` } }));
        return Promise.resolve({ metadata: { uid: `pod-${calls.creates.length}` } });
      },
      patch: (path: string, body: unknown) => {
        if (!path.endsWith('/status')) return Promise.resolve({});
        calls.statusPatches++;
        const ops = body as { op: string; path: string; value?: unknown }[];
        const status = ops.find((o) => o.path === '/status')?.value as VirtualMachineImageStatus | undefined;
        // The write of the outcome meets a conflict (another writer, a stale version).
        if (status?.phase === 'Ready' && failuresLeft > 0) {
          failuresLeft--;
          return Promise.reject(new KubeApiError(409, 'Conflict', 'the object has been modified', { method: 'PATCH', path }));
        }
        if (status !== undefined) statuses.push(status);
        return Promise.resolve({ metadata: { resourceVersion: String(11 + calls.statusPatches) } });
      },
      delete: (path: string) => {
        calls.deletes.push(path);
        return Promise.resolve({});
      },
    },
    events: { record: () => Promise.resolve() },
    clock: { now: () => Date.parse('2026-11-29T05:00:00Z'), schedule: () => ({ cancel: () => undefined }) },
    settings: { namespace: 'keyvirt-system', image: 'localhost/keyvirt/launcher:0.1.0', retryAfterFailureMs: 30_000, progressIntervalMs: 2_000 },
    progress: () => Promise.resolve(undefined),
  });
  return { controller, calls, pods, statuses };
}

/** The job pod ends as the kubelet reports it: Succeeded, its report as termination message. */
function succeed(pod: Pod): void {
  pod.status = { phase: 'Succeeded', containerStatuses: [{ name: 'job', state: { terminated: { exitCode: 0, message: JSON.stringify(result) } } }] };
}

const ctx = { signal: new AbortController().signal, log, reconcileId: 'r' };

void describe('ImageController and the ended import job', () => {
  it('keeps the ended job until its outcome is written, then removes it and imports nothing anew', async () => {
    const h = harness(1);
    await h.controller.reconcile(ctx, 'team/debian');
    assert.equal(h.calls.creates.length, 1, 'the import job started');
    const [pod] = h.pods;
    assert.ok(pod !== undefined);
    succeed(pod);
    await assert.rejects(h.controller.reconcile(ctx, 'team/debian'), /409 Conflict/);
    assert.deepEqual(h.calls.deletes, [], 'the job stays while its outcome is not written');
    await h.controller.reconcile(ctx, 'team/debian');
    assert.equal(h.calls.creates.length, 1, 'no second import');
    assert.equal(h.calls.deletes.length, 1, 'the ended job removed after the write');
    assert.match(h.calls.deletes[0] ?? '', /\/namespaces\/keyvirt-system\/pods\//);
    assert.equal(h.statuses.at(-1)?.phase, 'Ready');
  });

  it('removes a job left behind once the status holds its outcome', async () => {
    const h = harness(0);
    await h.controller.reconcile(ctx, 'team/debian');
    const [pod] = h.pods;
    assert.ok(pod !== undefined);
    succeed(pod);
    await h.controller.reconcile(ctx, 'team/debian');
    assert.equal(h.calls.deletes.length, 1);
    // The removal did not reach the cache (or failed): the next reconcile of the Ready image removes it again.
    await h.controller.reconcile(ctx, 'team/debian');
    assert.equal(h.calls.deletes.length, 2);
    assert.equal(h.calls.creates.length, 1);
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Pod } from '../runtime/core-schemas.ts';
import { DomainJobs, isDomainJobPod, type JobPlace } from './domain-jobs.ts';

const place: JobPlace = { namespace: 'keyvirt-system', name: 'keyvirt-sd-probe-sd', domainUid: 'sd-uid' };
const labels = { 'app.kubernetes.io/component': 'storage-job', 'app.kubernetes.io/managed-by': 'keyvirt-operator' };
const owner = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'sd', uid: 'sd-uid', controller: true };

function pod(meta: Partial<Pod['metadata']>): Pod {
  return {
    metadata: { name: place.name, namespace: place.namespace, uid: 'p1', labels, ownerReferences: [owner], ...meta },
    spec: { containers: [{ name: 'storage' }] },
    status: { phase: 'Succeeded', containerStatuses: [{ name: 'storage', state: { terminated: { exitCode: 0, message: '{"op":"probe","capacityBytes":1,"usedBytes":0,"freeBytes":1}' } } }] },
  };
}

void test('only a pod in the expected namespace, with the labels and the domain as controller by UID, is a job of the domain', () => {
  const cases: [string, Pod, boolean][] = [
    ['the real one', pod({}), true],
    ['same name in another namespace', pod({ namespace: 'tenant' }), false],
    ['no owner', pod({ ownerReferences: [] }), false],
    ['owner of another UID (a domain deleted and recreated, or a forgery)', pod({ ownerReferences: [{ ...owner, uid: 'other' }] }), false],
    ['owner not the controller', pod({ ownerReferences: [{ ...owner, controller: false }] }), false],
    ['owner of another kind', pod({ ownerReferences: [{ ...owner, kind: 'VirtualMachine' }] }), false],
    ['owner of another group', pod({ ownerReferences: [{ ...owner, apiVersion: 'evil.io/v1alpha1' }] }), false],
    ['missing labels', pod({ labels: {} }), false],
    ['another name', pod({ name: 'keyvirt-sd-probe-other' }), false],
  ];
  for (const [name, p, expected] of cases) assert.equal(isDomainJobPod(p, place), expected, name);
});

void test('in a namespace other than the operator\'s, only a pod this process created counts; another is deleted by UID', async () => {
  const deleted: { path: string; body: unknown }[] = [];
  const tenantPlace = { ...place, namespace: 'tenant', name: 'keyvirt-disk-create-abc' };
  let pods: Pod[] = [pod({ namespace: 'tenant', name: tenantPlace.name, uid: 'forged' })];
  const jobs = new DomainJobs({
    client: {
      create: (_path: string, body: unknown) => Promise.resolve({ ...(body as object), metadata: { uid: 'mine' } }),
      delete: (path: string, body?: unknown) => {
        deleted.push({ path, body });
        return Promise.resolve({});
      },
    },
    jobPods: () => pods,
    trustedNamespace: 'keyvirt-system',
  });
  const signal = new AbortController().signal;
  const forged = await jobs.find(tenantPlace, signal);
  assert.equal(forged.outcome, undefined, 'a pod this process did not create is not read');
  assert.deepEqual(deleted, [{ path: '/api/v1/namespaces/tenant/pods/keyvirt-disk-create-abc', body: { gracePeriodSeconds: 0, preconditions: { uid: 'forged' } } }]);
  await jobs.start(
    { name: tenantPlace.name, namespace: 'tenant', domain: 'sd', claimName: 'c', image: 'i', owner, operation: { op: 'probe' } },
    signal,
  );
  pods = [pod({ namespace: 'tenant', name: tenantPlace.name, uid: 'mine' })];
  assert.equal((await jobs.find(tenantPlace, signal)).outcome?.state, 'succeeded', 'its own pod is read');
  // In the operator's namespace a pod with the domain's controller reference is trusted across restarts.
  pods = [pod({ uid: 'from-before-a-restart' })];
  assert.equal((await jobs.find(place, signal)).outcome?.state, 'succeeded');
});

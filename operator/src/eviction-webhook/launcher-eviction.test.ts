// The eviction verdict for each kind of pod, the review's parse, the path token check and
// the token file (the kube-apiserver end to end: test/operator/drain.test.ts).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ZodError } from 'zod';
import type { Pod } from '../runtime/core-schemas.ts';
import { evictionVerdict, PodListError, reviewEviction, webhookTokenMatches } from './launcher-eviction.ts';
import { readWebhookToken } from './webhook-token.ts';

function pod(labels: Record<string, string>, phase?: string, deleting = false): Pod {
  return {
    metadata: { name: 'launcher-web-1', namespace: 'prod', labels, ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: { containers: [] },
    ...(phase === undefined ? {} : { status: { phase } }),
  };
}

const live = { 'keyvirt.io/vm': 'web-1', 'keyvirt.io/eviction-strategy': 'LiveMigrate' };

void describe('evictionVerdict', () => {
  void it('refuses a Running or Unknown launcher of a LiveMigrate VM, naming the pod and the VM', () => {
    for (const phase of ['Running', 'Unknown']) {
      const v = evictionVerdict(pod(live, phase), 'prod', 'launcher-web-1');
      assert.equal(v.allowed, false, phase);
      assert.match(v.allowed ? '' : v.message, /pod prod\/launcher-web-1 runs VirtualMachine web-1, whose evictionStrategy is LiveMigrate/);
    }
  });

  void it('lets go what holds no guest, a terminating pod, a Shutdown VM and anything that is no launcher', () => {
    const cases: [string, Pod | undefined][] = [
      ['Pending', pod(live, 'Pending')],
      ['no status', pod(live)],
      ['Succeeded', pod(live, 'Succeeded')],
      ['Failed', pod(live, 'Failed')],
      ['terminating', pod(live, 'Running', true)],
      ['Shutdown', pod({ 'keyvirt.io/vm': 'web-1', 'keyvirt.io/eviction-strategy': 'Shutdown' }, 'Running')],
      ['no strategy label', pod({ 'keyvirt.io/vm': 'web-1' }, 'Running')],
      ['no VM label', pod({ 'keyvirt.io/eviction-strategy': 'LiveMigrate' }, 'Running')],
      ['no such pod', undefined],
    ];
    for (const [what, p] of cases) assert.equal(evictionVerdict(p, 'prod', 'launcher-web-1').allowed, true, what);
  });
});

void describe('reviewEviction', () => {
  const review = (request: Record<string, unknown>): string => JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
  const evict = { uid: 'u1', resource: { group: '', version: 'v1', resource: 'pods' }, subResource: 'eviction', operation: 'CREATE', name: 'launcher-web-1', namespace: 'prod' };

  void it('reads the pod by name among launcher pods and answers with the request uid', async () => {
    const asked: string[] = [];
    const client = { get: (p: string): Promise<unknown> => (asked.push(p), Promise.resolve({ items: [pod(live, 'Running')] })) };
    const { answer, verdict } = await reviewEviction(client, review(evict));
    assert.equal(verdict.allowed, false);
    assert.equal(asked[0], '/api/v1/namespaces/prod/pods?fieldSelector=metadata.name%3Dlauncher-web-1&labelSelector=app.kubernetes.io%2Fcomponent%3Dlauncher%2Capp.kubernetes.io%2Fmanaged-by%3Dkeyvirt-operator');
    const r = (answer as { response: { uid: string; allowed: boolean; status: { code: number } } }).response;
    assert.equal(r.uid, 'u1');
    assert.equal(r.status.code, 429);
  });

  void it('allows, without reading anything, a request that is not the eviction of a pod', async () => {
    const client = { get: (): Promise<unknown> => Promise.reject(new Error('must not read')) };
    for (const other of [{ ...evict, operation: 'UPDATE' }, { ...evict, subResource: 'status' }, { ...evict, resource: { group: 'apps', version: 'v1', resource: 'pods' } }, { ...evict, namespace: '' }]) {
      assert.equal((await reviewEviction(client, review(other))).verdict.allowed, true);
    }
  });

  void it('throws on a body that is not a review (the server answers 400)', async () => {
    const client = { get: (): Promise<unknown> => Promise.resolve({ items: [] }) };
    await assert.rejects(reviewEviction(client, 'nope'), SyntaxError);
    await assert.rejects(reviewEviction(client, JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: evict })), /apiVersion must be admission.k8s.io\/v1/);
    await assert.rejects(reviewEviction(client, review({ ...evict, uid: undefined })), /uid/);
  });

  void it('throws a PodListError, no ZodError, when the API server answers something that is no pod list (the server answers 500)', async () => {
    const client = { get: (): Promise<unknown> => Promise.resolve({ items: [{ kind: 'Pod' }] }) };
    await assert.rejects(reviewEviction(client, review(evict)), (err: unknown) => err instanceof PodListError && !(err instanceof ZodError) && /did not parse/.test(err.message));
  });
});

void describe('webhook token', () => {
  const token = 'a'.repeat(20) + 'b0z9'.repeat(4);

  void it('matches the exact token after the path, with or without a query', () => {
    assert.equal(webhookTokenMatches(`/admission/launcher-eviction/${token}`, token), true);
    assert.equal(webhookTokenMatches(`/admission/launcher-eviction/${token}?timeout=10s`, token), true);
    for (const url of [undefined, '/admission/launcher-eviction/', `/admission/launcher-eviction/${token}/`, `/admission/launcher-eviction/${token.slice(0, -1)}`, `/other/${token}`]) {
      assert.equal(webhookTokenMatches(url, token), false, String(url));
    }
    assert.equal(webhookTokenMatches('/admission/launcher-eviction/', ''), false, 'an empty token never matches');
  });

  void it('reads a token file, and names the file and the fault of a bad one', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kv-webhook-token-'));
    try {
      const file = path.join(dir, 'token');
      await writeFile(file, `${token}\n`);
      assert.equal(readWebhookToken(file), token);
      await writeFile(file, 'short');
      assert.throws(() => readWebhookToken(file), /token in .*token is shorter than 32 characters/);
      await writeFile(file, `${token}A`);
      assert.throws(() => readWebhookToken(file), /holds characters other than/);
      assert.throws(() => readWebhookToken(path.join(dir, 'missing')), /cannot read the eviction webhook token file .*missing/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

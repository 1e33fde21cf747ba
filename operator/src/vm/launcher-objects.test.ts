// The launcher Secret is this VM's or nobody's: an existing Secret of that name that
// another object controls is neither overwritten nor read for its token; the Secret of
// an earlier VM of the same name is replaced (precondition on its uid), never reused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { pino } from 'pino';
import { KubeApiError, type KubeMethod } from '../runtime/kube-client.ts';
import { LauncherObjects, LauncherSecretNotOwnedError } from './launcher-objects.ts';
import type { LauncherPodInput } from './launcher-pod.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: { runStrategy: 'Always', template: { cpu: { cores: 1 }, memory: { size: '256Mi' } } },
});

const input: LauncherPodInput = {
  vm,
  settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
  affinity: {},
  devices: [],
  disks: [],
};

interface Call { method: string; path: string; body?: unknown }

/** An API server holding at most one Secret; records every call. */
function fakeClient(secret: Record<string, unknown> | undefined): { calls: Call[]; client: ConstructorParameters<typeof LauncherObjects>[0] } {
  const calls: Call[] = [];
  const notFound = (method: KubeMethod, path: string): KubeApiError => new KubeApiError(404, 'NotFound', 'not found', { method, path });
  let stored = secret;
  return {
    calls,
    client: {
      get: (path) => {
        calls.push({ method: 'GET', path });
        return path.includes('/secrets/') && stored !== undefined ? Promise.resolve(stored) : Promise.reject(notFound('GET', path));
      },
      create: (path, body) => {
        calls.push({ method: 'POST', path, body });
        return Promise.resolve(body);
      },
      request: (method, path, options) => {
        calls.push({ method, path, body: options?.body });
        return Promise.resolve(options?.body);
      },
      delete: (path, body) => {
        calls.push({ method: 'DELETE', path, body });
        stored = undefined;
        return Promise.resolve({});
      },
    },
  };
}

const secretOf = (ownerReferences: unknown[], labels: Record<string, string> = { 'app.kubernetes.io/managed-by': 'keyvirt-operator' }): Record<string, unknown> => ({
  metadata: { name: 'launcher-web-1', namespace: 'prod', uid: 'secret-uid', resourceVersion: '7', labels, ownerReferences },
  data: { token: Buffer.from('planted-token').toString('base64') },
});
const vmRef = (uid: string): Record<string, unknown> => ({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid, controller: true, blockOwnerDeletion: true });
const log = pino({ level: 'silent' });

void describe('launcher Secret ownership', () => {
  void it('keeps the token of the Secret this VM controls', async () => {
    const { calls, client } = fakeClient(secretOf([vmRef('vm-uid')]));
    const objects = new LauncherObjects(client);
    await objects.createLauncher(input, log);
    const put = calls.find((c) => c.method === 'PUT');
    assert.ok(put !== undefined, 'the Secret is brought up to date');
    const data = (put.body as { data: { token: string } }).data;
    assert.equal(Buffer.from(data.token, 'base64').toString(), 'planted-token');
  });

  for (const [what, secret] of [
    ['a Secret nobody owns', secretOf([], {})],
    ['a Secret controlled by something else', secretOf([{ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'cm', controller: true }])],
    ['a Secret naming this VM as a mere owner', secretOf([{ ...vmRef('vm-uid'), controller: false }])],
    ['an unlabelled Secret controlled by another VM of this name', secretOf([vmRef('old-uid')], {})],
  ] as const) {
    void it(`refuses ${what}: no write, no pod, no token taken`, async () => {
      const { calls, client } = fakeClient(secret);
      const objects = new LauncherObjects(client);
      await assert.rejects(objects.createLauncher(input, log), LauncherSecretNotOwnedError);
      assert.deepEqual(calls.map((c) => c.method), ['GET'], 'only the read');
    });
  }

  void it('replaces the Secret of an earlier VM of the same name with a fresh token', async () => {
    const { calls, client } = fakeClient(secretOf([vmRef('old-uid')]));
    const objects = new LauncherObjects(client);
    await objects.createLauncher(input, log);
    assert.deepEqual(calls.map((c) => c.method), ['GET', 'DELETE', 'POST', 'POST']);
    assert.deepEqual((calls[1]?.body as { preconditions: unknown }).preconditions, { uid: 'secret-uid' });
    const created = calls[2]?.body as { data: { token: string }; metadata: { ownerReferences: { uid: string }[] } };
    assert.notEqual(Buffer.from(created.data.token, 'base64').toString(), 'planted-token');
    assert.equal(created.metadata.ownerReferences[0]?.uid, 'vm-uid');
  });
});

// The launcher Secret is this VM's or nobody's: an existing Secret of that name that
// another object controls is neither overwritten nor read for its token; the Secret of
// an earlier VM of the same name is replaced (precondition on its uid), never reused.
// The Secret is created first: it is read only when its name is taken.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { pino } from 'pino';
import { KubeApiError, type KubeMethod } from '../runtime/kube-client.ts';
import { LauncherObjects, LauncherSecretNotOwnedError, LauncherSecretRaceError } from './launcher-objects.ts';
import type { Pod } from '../runtime/core-schemas.ts';
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

/** An API server holding at most one Secret (a second POST of it meets 409); records every call. */
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
        if (path.endsWith('/secrets')) {
          if (stored !== undefined) return Promise.reject(new KubeApiError(409, 'AlreadyExists', 'already exists', { method: 'POST', path }));
          stored = body as Record<string, unknown>;
        }
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
const launcherPodOf = (vmUid: string): Pod => ({ metadata: { name: 'launcher-web-1', namespace: 'prod', labels: { 'keyvirt.io/vm-uid': vmUid } }, spec: { containers: [] } });

const methods = (calls: readonly Call[]): string[] => calls.map((c) => `${c.method} ${c.path.replace(/^.*\/namespaces\/prod\//, '')}`);

void describe('launcher Secret ownership', () => {
  void it('a new VM: the Secret is created without a read, then the pod', async () => {
    const { calls, client } = fakeClient(undefined);
    const objects = new LauncherObjects(client);
    assert.equal(await objects.createLauncher(input, log), true);
    assert.deepEqual(methods(calls), ['POST secrets', 'POST pods']);
    const created = calls[0]?.body as { data: { token: string }; metadata: { ownerReferences: { uid: string; controller: boolean }[] } };
    assert.equal(Buffer.from(created.data.token, 'base64').toString().length, 64, 'a fresh 32-byte token');
    assert.deepEqual(created.metadata.ownerReferences.map((r) => [r.uid, r.controller]), [['vm-uid', true]]);
  });

  void it('keeps the token of the Secret this VM controls and rewrites its configuration', async () => {
    const { calls, client } = fakeClient(secretOf([vmRef('vm-uid')]));
    const objects = new LauncherObjects(client);
    await objects.createLauncher(input, log);
    assert.deepEqual(methods(calls), ['POST secrets', 'GET secrets/launcher-web-1', 'PUT secrets/launcher-web-1', 'POST pods']);
    const put = calls.find((c) => c.method === 'PUT');
    const body = put?.body as { data: { token: string }; metadata: { resourceVersion: string } };
    assert.equal(Buffer.from(body.data.token, 'base64').toString(), 'planted-token');
    assert.equal(body.metadata.resourceVersion, '7', 'the write is guarded by the version read');
  });

  void it('a Secret of this VM already up to date (a retried creation) is not written again', async () => {
    const first = fakeClient(undefined);
    await new LauncherObjects(first.client).createLauncher(input, log);
    const written = first.calls[0]?.body as { metadata: Record<string, unknown>; data: Record<string, string> };
    const { calls, client } = fakeClient({ ...written, metadata: { ...written.metadata, uid: 'secret-uid', resourceVersion: '8' } });
    const objects = new LauncherObjects(client);
    await objects.createLauncher(input, log);
    assert.deepEqual(methods(calls), ['POST secrets', 'GET secrets/launcher-web-1', 'POST pods']);
  });

  void it('a Secret of this VM whose data and labels come back in another key order is not written again', async () => {
    const first = fakeClient(undefined);
    await new LauncherObjects(first.client).createLauncher(input, log);
    const written = first.calls[0]?.body as { metadata: { labels: Record<string, string> } & Record<string, unknown>; data: Record<string, string> };
    const reversed = (o: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(o).reverse());
    assert.ok(Object.keys(written.data).length > 1 && Object.keys(written.metadata.labels).length > 1, 'more than one key to reorder');
    const stored = { data: reversed(written.data), metadata: { ...written.metadata, labels: reversed(written.metadata.labels), uid: 'secret-uid', resourceVersion: '8' } };
    const { calls, client } = fakeClient(stored);
    await new LauncherObjects(client).createLauncher(input, log);
    assert.deepEqual(methods(calls), ['POST secrets', 'GET secrets/launcher-web-1', 'POST pods']);
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
      assert.deepEqual(methods(calls), ['POST secrets', 'GET secrets/launcher-web-1'], 'the refused creation and the read: no write, no pod');
      assert.equal(objects.cachedToken(launcherPodOf('vm-uid')), undefined, 'its token is not taken');
    });
  }

  void it('replaces the Secret of an earlier VM of the same name with a fresh token', async () => {
    const { calls, client } = fakeClient(secretOf([vmRef('old-uid')]));
    const objects = new LauncherObjects(client);
    await objects.createLauncher(input, log);
    assert.deepEqual(methods(calls), ['POST secrets', 'GET secrets/launcher-web-1', 'DELETE secrets/launcher-web-1', 'POST secrets', 'POST pods']);
    assert.deepEqual((calls[2]?.body as { preconditions: unknown }).preconditions, { uid: 'secret-uid' });
    const created = calls[3]?.body as { data: { token: string }; metadata: { ownerReferences: { uid: string }[] } };
    assert.notEqual(Buffer.from(created.data.token, 'base64').toString(), 'planted-token');
    assert.equal(created.metadata.ownerReferences[0]?.uid, 'vm-uid');
    assert.equal(objects.cachedToken(launcherPodOf('vm-uid')), Buffer.from(created.data.token, 'base64').toString());
  });

  void it('a Secret that goes away between the refused creation and the read fails the attempt without a pod', async () => {
    const { calls, client } = fakeClient(secretOf([vmRef('old-uid')]));
    const objects = new LauncherObjects({ ...client, get: (path) => client.delete(path).then(() => client.get(path)) });
    await assert.rejects(objects.createLauncher(input, log), LauncherSecretRaceError);
    assert.ok(!calls.some((c) => c.path.endsWith('/pods')), 'no pod');
  });
});

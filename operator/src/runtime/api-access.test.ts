import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ApiAccessError, inClusterEndpoint, kubeconfigEndpoint, loadApiAccess, TOKEN_REREAD_MS } from './api-access.ts';

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = { server: 'https://127.0.0.1:6443/' }): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
}

describe('kubeconfigEndpoint', () => {
  it('reads a JSON kubeconfig with a bearer token', async () => {
    const e = kubeconfigEndpoint(kubeconfig({ token: 'abc' }), '/nowhere/config', Date.now);
    assert.ok(e !== undefined);
    assert.equal(e.server, 'https://127.0.0.1:6443');
    assert.deepEqual(await e.headers(), { authorization: 'Bearer abc' });
  });

  it('reads a token file again once its re-read period has passed', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-access-'));
    await writeFile(path.join(dir, 'token'), 'one\n');
    let now = 0;
    const e = kubeconfigEndpoint(kubeconfig({ tokenFile: 'token' }), path.join(dir, 'config'), () => now);
    assert.ok(e !== undefined);
    assert.deepEqual(await e.headers(), { authorization: 'Bearer one' });
    await writeFile(path.join(dir, 'token'), 'two\n');
    now = TOKEN_REREAD_MS - 1;
    assert.deepEqual(await e.headers(), { authorization: 'Bearer one' });
    now = TOKEN_REREAD_MS;
    assert.deepEqual(await e.headers(), { authorization: 'Bearer two' });
  });

  const handedOn: [string, string][] = [
    ['YAML', 'apiVersion: v1\nkind: Config\n'],
    ['an exec plugin', kubeconfig({ exec: { command: 'get-token' } })],
    ['basic auth', kubeconfig({ username: 'a', password: 'b' })],
    ['impersonation', kubeconfig({ token: 't', as: 'someone' })],
    ['a proxy', kubeconfig({ token: 't' }, { server: 'https://h', 'proxy-url': 'http://p' })],
    ['a context naming no cluster', kubeconfig({ token: 't' }).replace('"cluster":"c","user"', '"cluster":"other","user"')],
  ];
  for (const [what, text] of handedOn) {
    it(`hands ${what} on to client-node`, () => {
      assert.equal(kubeconfigEndpoint(text, '/nowhere/config', Date.now), undefined);
    });
  }

  it('refuses plain HTTP unless TLS verification is off', () => {
    assert.throws(() => kubeconfigEndpoint(kubeconfig({ token: 't' }, { server: 'http://127.0.0.1:8080' }), '/x', Date.now), ApiAccessError);
    assert.ok(kubeconfigEndpoint(kubeconfig({ token: 't' }, { server: 'http://127.0.0.1:8080', 'insecure-skip-tls-verify': true }), '/x', Date.now));
  });
});

describe('inClusterEndpoint', () => {
  it('names the missing variables', () => {
    assert.throws(() => inClusterEndpoint({}, Date.now, '/nowhere'), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT/);
  });

  it("uses the service account's token and CA, brackets an IPv6 host", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-access-'));
    await writeFile(path.join(dir, 'token'), 'sa-token');
    await writeFile(path.join(dir, 'ca.crt'), 'not checked until a connection');
    const e = inClusterEndpoint({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, Date.now, dir);
    assert.equal(e.server, 'https://[fd00::1]:443');
    assert.deepEqual(await e.headers(), { authorization: 'Bearer sa-token' });
  });
});

describe('loadApiAccess', () => {
  it('loads a YAML kubeconfig through client-node', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-access-'));
    const file = path.join(dir, 'config');
    await writeFile(
      file,
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://10.0.0.1:6443"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
    );
    const access = await loadApiAccess(file, {});
    assert.ok('getCurrentCluster' in access);
    assert.equal(access.getCurrentCluster()?.server, 'https://10.0.0.1:6443');
  });

  it('takes a single KUBECONFIG file the lean way', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-access-'));
    const file = path.join(dir, 'config');
    await writeFile(file, kubeconfig({ token: 'k' }));
    const access = await loadApiAccess(undefined, { KUBECONFIG: file, HOME: dir });
    assert.ok('server' in access);
    assert.deepEqual(await access.headers(), { authorization: 'Bearer k' });
  });

  it('falls back to the service account without a kubeconfig', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-access-'));
    await assert.rejects(loadApiAccess(undefined, { HOME: dir }), ApiAccessError);
  });
});

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeconfigError } from './errors.ts';
import { kubeconfigFiles, loadKubeconfig } from './kubeconfig.ts';

function config(o: { current?: string; contexts: { name: string; cluster: string; namespace?: string }[]; clusters: { name: string; server: string }[] }): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': o.current ?? '',
    clusters: o.clusters.map((c) => ({ name: c.name, cluster: { server: c.server } })),
    users: [{ name: 'u', user: { token: 't' } }],
    contexts: o.contexts.map((c) => ({ name: c.name, context: { cluster: c.cluster, user: 'u', ...(c.namespace !== undefined ? { namespace: c.namespace } : {}) } })),
  });
}

void describe('kubeconfig like kubectl', () => {
  let dir: string;
  let a: string;
  let b: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kv-plugin-kc-'));
    a = path.join(dir, 'a');
    b = path.join(dir, 'b');
    await writeFile(a, config({ current: 'dev', contexts: [{ name: 'dev', cluster: 'one', namespace: 'team-a' }], clusters: [{ name: 'one', server: 'https://one:6443' }] }));
    await writeFile(b, config({
      current: 'prod',
      contexts: [{ name: 'dev', cluster: 'two' }, { name: 'prod', cluster: 'two' }],
      clusters: [{ name: 'one', server: 'https://ignored:6443' }, { name: 'two', server: 'https://two:6443' }],
    }));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  void it('chooses --kubeconfig, else $KUBECONFIG (missing files skipped), else ~/.kube/config', () => {
    const exists = (f: string): boolean => f === a || f === b || f === '/home/u/.kube/config';
    assert.deepEqual(kubeconfigFiles({ kubeconfig: b }, { KUBECONFIG: a }, exists), [b]);
    assert.deepEqual(kubeconfigFiles({}, { KUBECONFIG: `${a}:/nope:${b}` }, exists), [a, b]);
    assert.deepEqual(kubeconfigFiles({}, { HOME: '/home/u' }, exists), ['/home/u/.kube/config']);
    assert.throws(() => kubeconfigFiles({ kubeconfig: '/nope' }, {}, exists), /--kubeconfig \/nope: no such file/);
    assert.throws(() => kubeconfigFiles({}, { KUBECONFIG: '/x:/y' }, exists), /none of the files in KUBECONFIG exists: \/x, \/y/);
    assert.throws(() => kubeconfigFiles({}, { HOME: '/empty' }, exists), (e: unknown) => e instanceof KubeconfigError && /\/empty\/\.kube\/config does not exist; set KUBECONFIG or pass --kubeconfig/.test(e.message));
  });

  void it('merges $KUBECONFIG files first-wins: current context, contexts and clusters of the first file', () => {
    const loaded = loadKubeconfig({}, { KUBECONFIG: `${a}:${b}` });
    assert.equal(loaded.kc.currentContext, 'dev');
    assert.equal(loaded.kc.getCurrentCluster()?.server, 'https://one:6443');
    assert.equal(loaded.namespace, 'team-a', "the context's namespace");
  });

  void it('--context picks another context; -n beats the context namespace; default namespace is "default"', () => {
    const prod = loadKubeconfig({ context: 'prod' }, { KUBECONFIG: `${a}:${b}` });
    assert.equal(prod.kc.getCurrentCluster()?.server, 'https://two:6443');
    assert.equal(prod.namespace, 'default');
    assert.equal(loadKubeconfig({ namespace: 'x' }, { KUBECONFIG: a }).namespace, 'x');
  });

  void it('names a missing context and the contexts there are', () => {
    assert.throws(() => loadKubeconfig({ context: 'staging' }, { KUBECONFIG: `${a}:${b}` }), /context "staging" not found in .*\/a, .*\/b \(contexts: dev, prod\)/);
  });

  void it('names an unreadable file', async () => {
    const bad = path.join(dir, 'bad');
    await writeFile(bad, '{ not yaml: [');
    assert.throws(() => loadKubeconfig({ kubeconfig: bad }, {}), /cannot read kubeconfig .*\/bad/);
  });
});

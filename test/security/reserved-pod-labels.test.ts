// Pod labels of keyvirt.io and its subdomains are the operator's (ADR 0114), against the real API server
// with the chart's pod policy (ADR 0119) and the operator's RBAC installed for a
// release of this suite's own. A namespace editor can neither create a pod carrying one
// (so no pod of theirs is selected by the launcher disruption budget, the operator's pod
// cache or the node agent), nor add, change or remove one on any pod — through the pod or
// its status — nor have a ReplicaSet do it for them; the operator's account creates and
// relabels launcher pods as before; labels of other prefixes stay anyone's.
//
// The suite binds its release's policy to its own namespace only (a namespace selector on
// the binding): the shared cluster's other suites keep the policy of the shipped RBAC
// (operator/deploy/rbac.yaml), which asks the same of the authorizer. Where an end-to-end
// suite has applied that one, either may be the one that refuses.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { tokenKubeconfig } from '../plugin/plugin-process.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const helmBin = path.join(repo, 'hack/.cache/k8s/bin/helm');
const POLICY = 'pods';

const manifestSchema = z.looseObject({ kind: z.string(), metadata: z.looseObject({ name: z.string() }) });
type Manifest = z.infer<typeof manifestSchema>;

function kubeVersion(): string {
  const m = /^KUBERNETES_VERSION=(\S+)$/m.exec(fs.readFileSync(path.join(repo, 'hack/k8s/pins.env'), 'utf8'));
  if (m?.[1] === undefined) throw new Error('KUBERNETES_VERSION missing from hack/k8s/pins.env');
  return m[1];
}

/** The outcome of one kubectl call: allowed, or the server's refusal. */
interface Outcome { ok: boolean; out: string }

const LAUNCHER_LABELS = { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator' };

void describe('keyvirt.io pod labels are reserved to the operator (real API server)', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  const ns = `kv-lbl-${randomBytes(3).toString('hex')}`;
  const release = ns;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-lbl-'));
  let operator: string;
  let author: string;

  const as = (kubeconfig: string, args: readonly string[], input?: unknown): Outcome => {
    const r = spawnSync(cluster.kubectlPath, ['--kubeconfig', kubeconfig, '-n', ns, ...args], {
      encoding: 'utf8', input: input === undefined ? undefined : JSON.stringify(input),
    });
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  };
  /** A kubeconfig that authenticates with a token of the ServiceAccount `name` in this suite's namespace. */
  const accountKubeconfig = (name: string): Promise<string> => {
    const token = cluster.kubectl(['create', 'token', name, '-n', ns, '--duration=1h']).trim();
    return tokenKubeconfig(cluster, path.join(dir, `${name}.kubeconfig`), { name, token }, ns);
  };
  const refused = (outcome: Outcome, labels: readonly string[], what: RegExp): void => {
    assert.equal(outcome.ok, false, `expected a refusal, got: ${outcome.out}`);
    // This release's policy, or the same policy of another KeyVirt install in the cluster: the shipped
    // RBAC or a chart release of a suite running beside this one. Each denies alike (the chart test
    // holds them equal); which one the API server evaluates first is not this suite's to choose.
    assert.match(outcome.out, new RegExp(`ValidatingAdmissionPolicy '([a-z0-9-]+)-${POLICY}' with binding '\\1-${POLICY}' denied request`), outcome.out);
    assert.match(outcome.out, /pod labels of keyvirt\.io and its subdomains are reserved to the KeyVirt operator/, outcome.out);
    assert.match(outcome.out, what, outcome.out);
    for (const label of labels) assert.ok(outcome.out.includes(label), `the message names ${label}: ${outcome.out}`);
    assert.match(outcome.out, /only an account allowed to set podlabels\.keyvirt\.io/, outcome.out);
  };
  const allowed = (outcome: Outcome): void => assert.ok(outcome.ok, outcome.out);
  /**
   * A pod that never runs (no node matches it): only its metadata is under test. Its
   * container is unprivileged, as the same policy requires of the operator's own pods.
   */
  const pod = (name: string, labels: Record<string, string>): Record<string, unknown> => ({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: ns, labels },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': 'kv-no-such-node' },
      automountServiceAccountToken: false,
      containers: [{
        name: 'c', image: 'localhost/keyvirt/launcher:0.1.0',
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      }],
    },
  });
  const labelsOf = (name: string): Record<string, string> =>
    z.record(z.string(), z.string()).parse(JSON.parse(cluster.kubectl(['get', 'pod', name, '-n', ns, '-o', 'jsonpath={.metadata.labels}']) || '{}'));
  /** A merge patch of the pod (or its status) with the token of `kubeconfig`, as the operator sends it: no read before (its role has no `get` on pods). */
  const mergePatch = async (kubeconfig: string, name: string, body: unknown, subresource?: string): Promise<Outcome> => {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const server = kc.getCurrentCluster();
    const token = kc.getCurrentUser()?.token;
    if (server === null || token === undefined) throw new Error(`${kubeconfig} has no server or token`);
    const url = new URL(`/api/v1/namespaces/${ns}/pods/${name}${subresource === undefined ? '' : `/${subresource}`}`, server.server);
    return new Promise((resolve, reject) => {
      const req = https.request(url, {
        method: 'PATCH', ca: Buffer.from(server.caData ?? '', 'base64'),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ ok: (res.statusCode ?? 500) < 300, out: text }));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  };
  const relabel = (kubeconfig: string, name: string, labels: Record<string, string | null>, subresource?: string): Promise<Outcome> =>
    mergePatch(kubeconfig, name, { metadata: { labels } }, subresource);
  /** Whether the account of `kubeconfig` may `set` podlabels.keyvirt.io here (a resource no server serves, so no `kubectl auth can-i`). */
  const maySetLabels = (kubeconfig: string): boolean => {
    const review = { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { group: 'keyvirt.io', resource: 'podlabels', verb: 'set', namespace: ns } } };
    const o = as(kubeconfig, ['create', '--validate=false', '-o', 'json', '-f', '-'], review);
    assert.ok(o.ok, o.out);
    return z.object({ status: z.object({ allowed: z.boolean() }) }).parse(JSON.parse(o.out)).status.allowed;
  };

  before(async () => {
    cluster = await ensureCluster();
    cluster.kubectl(['create', 'namespace', ns]);
    const r = spawnSync(helmBin, ['template', release, path.join(repo, 'charts/keyvirt'), '--namespace', ns, '--kube-version', kubeVersion(),
      '--show-only', 'templates/rbac-operator.yaml', '--show-only', 'templates/admission-policy.yaml'],
    { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm') } });
    assert.equal(r.status, 0, r.stderr);
    const wanted = new Set([
      `ServiceAccount/keyvirt-operator`, `ClusterRole/${release}-operator`, `ClusterRoleBinding/${release}-operator`,
      `ValidatingAdmissionPolicy/${release}-${POLICY}`, `ValidatingAdmissionPolicyBinding/${release}-${POLICY}`,
    ]);
    const objects = parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as unknown)
      .filter((o) => o !== null)
      .map((o) => manifestSchema.parse(o))
      .filter((o) => wanted.has(`${o.kind}/${o.metadata.name}`));
    assert.equal(objects.length, wanted.size, `the chart renders ${[...wanted].join(', ')}`);
    const binding = objects.find((o): o is Manifest & { spec: Record<string, unknown> } => o.kind === 'ValidatingAdmissionPolicyBinding');
    assert.ok(binding !== undefined);
    binding.spec = { ...binding.spec, matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } } };
    cluster.kubectl(['apply', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    // A namespace editor (the built-in edit role), who may also write pod status here.
    cluster.kubectl(['create', 'serviceaccount', 'pod-author', '-n', ns]);
    cluster.kubectl(['create', 'rolebinding', 'pod-author-edit', '--clusterrole=edit', `--serviceaccount=${ns}:pod-author`, '-n', ns]);
    cluster.kubectl(['create', 'role', 'pod-status-writer', '--verb=patch', '--resource=pods/status', '-n', ns]);
    cluster.kubectl(['create', 'rolebinding', 'pod-author-status', '--role=pod-status-writer', `--serviceaccount=${ns}:pod-author`, '-n', ns]);
    operator = await accountKubeconfig('keyvirt-operator');
    author = await accountKubeconfig('pod-author');
    // The policy compiles asynchronously: wait until it reports its type check, then require it clean.
    const status = await eventually('the policy type-checked', () => {
      const out = cluster.kubectl(['get', 'validatingadmissionpolicy', `${release}-${POLICY}`, '-o', 'jsonpath={.status}']);
      return out.includes('typeChecking') ? out : undefined;
    }, 60_000);
    assert.doesNotMatch(status, /expressionWarnings/, status);
    // The first request through a new binding can race the policy's arrival in the admission plugin.
    await eventually('the policy enforced', () => {
      const o = as(author, ['create', '--dry-run=server', '-f', '-'], pod('probe', { 'keyvirt.io/vm': 'web-1' }));
      return o.out.includes('denied request') ? true : undefined;
    }, 60_000);
  });

  after(() => {
    if (cluster === undefined) return;
    for (const args of [
      ['delete', 'namespace', ns, '--wait=false', '--ignore-not-found'],
      ['delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', `${release}-${POLICY}`, '--ignore-not-found'],
      ['delete', 'clusterrole,clusterrolebinding', `${release}-operator`, '--ignore-not-found'],
    ]) {
      try {
        cluster.kubectl(args);
      } catch {
        // best effort: every name is unique to this run
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    cluster.release();
  });

  void it('RBAC: the operator may set KeyVirt pod labels, a namespace editor may not', () => {
    assert.equal(maySetLabels(operator), true);
    assert.equal(maySetLabels(author), false);
    assert.equal(as(author, ['auth', 'can-i', 'create', 'pods']).out.trim(), 'yes', 'the editor creates pods');
  });

  void it('refuses a pod author\'s pod labelled for the launcher disruption budget, naming the label', () => {
    refused(as(author, ['create', '-f', '-'], pod('unevictable', { ...LAUNCHER_LABELS, 'keyvirt.io/eviction-strategy': 'LiveMigrate' })),
      ['keyvirt.io/eviction-strategy'], /creates a pod with keyvirt\.io\/eviction-strategy/);
    refused(as(author, ['create', '-f', '-'], pod('fake-launcher', { ...LAUNCHER_LABELS, 'keyvirt.io/vm': 'web-1', 'keyvirt.io/vm-uid': '6a1b5cf2-0000-4000-8000-000000000001' })),
      ['keyvirt.io/vm', 'keyvirt.io/vm-uid'], /creates a pod with/);
    refused(as(author, ['create', '-f', '-'], pod('subdomain', { 'devices.keyvirt.io/kvm': '1' })), ['devices.keyvirt.io/kvm'], /creates a pod with/);
    assert.equal(as(author, ['get', 'pod', 'unevictable']).ok, false, 'nothing was created');
    // The launcher labels outside keyvirt.io are generic and stay anyone's, as do look-alike domains.
    allowed(as(author, ['create', '-f', '-'], pod('own', { ...LAUNCHER_LABELS, app: 'mine', 'notkeyvirt.io/vm': 'web-1', 'example.com/keyvirt.io': 'x' })));
  });

  void it('refuses adding, changing or removing a KeyVirt label through the pod or its status; other labels stay free', async () => {
    allowed(as(author, ['create', '-f', '-'], pod('plain', { app: 'mine' })));
    refused(await relabel(author, 'plain', { 'keyvirt.io/eviction-strategy': 'LiveMigrate' }), ['keyvirt.io/eviction-strategy'], /sets, changes or removes/);
    refused(await relabel(author, 'plain', { 'keyvirt.io/vm': 'web-1' }, 'status'), ['keyvirt.io/vm'], /sets, changes or removes/);
    allowed(await relabel(author, 'plain', { app: 'still-mine', tier: 'web' }));
    assert.deepEqual(labelsOf('plain'), { app: 'still-mine', tier: 'web' });
    allowed(as(author, ['delete', 'pod', 'plain', '--wait=false']));
  });

  void it('lets the operator create and relabel a launcher pod; a pod author may touch only its other labels', async () => {
    allowed(as(operator, ['create', '-f', '-'], pod('launcher-web-1', { ...LAUNCHER_LABELS, 'keyvirt.io/vm': 'web-1', 'keyvirt.io/eviction-strategy': 'None' })));
    // The VM controller keeps the eviction-strategy label equal to the spec; a promotion removes a candidate's label.
    allowed(await relabel(operator, 'launcher-web-1', { 'keyvirt.io/eviction-strategy': 'LiveMigrate', 'keyvirt.io/migration-target': 'm-1' }));
    allowed(await relabel(operator, 'launcher-web-1', { 'keyvirt.io/migration-target': null }));
    refused(await relabel(author, 'launcher-web-1', { 'keyvirt.io/eviction-strategy': 'None' }), ['keyvirt.io/eviction-strategy'], /sets, changes or removes/);
    refused(await relabel(author, 'launcher-web-1', { 'keyvirt.io/vm': null }), ['keyvirt.io/vm'], /sets, changes or removes/);
    refused(await relabel(author, 'launcher-web-1', { 'keyvirt.io/ha-replacement': 'x' }, 'status'), ['keyvirt.io/ha-replacement'], /sets, changes or removes/);
    // Writes that leave the KeyVirt labels as they are (another label, the status) pass, whoever makes them.
    allowed(await relabel(author, 'launcher-web-1', { note: 'seen' }));
    allowed(await mergePatch(author, 'launcher-web-1', { status: { conditions: [{ type: 'example.com/Checked', status: 'True' }] } }, 'status'));
    assert.deepEqual(labelsOf('launcher-web-1'), { ...LAUNCHER_LABELS, 'keyvirt.io/vm': 'web-1', 'keyvirt.io/eviction-strategy': 'LiveMigrate', note: 'seen' });
    // The same policy holds the operator's own pod writes to a launcher's shape (ADR 0107, 0119).
    const privileged = pod('launcher-web-2', { ...LAUNCHER_LABELS, 'keyvirt.io/vm': 'web-2' });
    (privileged.spec as { containers: { securityContext: object }[] }).containers[0].securityContext = { privileged: true };
    const refusal = as(operator, ['create', '-f', '-'], privileged);
    assert.equal(refusal.ok, false, refusal.out);
    assert.match(refusal.out, /launcher containers are unprivileged/, refusal.out);
    allowed(as(operator, ['delete', 'pod', 'launcher-web-1', '--wait=false']));
  });

  void it('refuses the pods a pod author\'s ReplicaSet would create with a KeyVirt label', async () => {
    allowed(as(author, ['create', '-f', '-'], {
      apiVersion: 'apps/v1', kind: 'ReplicaSet',
      metadata: { name: 'unevictables', namespace: ns },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'unevictables' } },
        template: { metadata: { labels: { app: 'unevictables', ...LAUNCHER_LABELS, 'keyvirt.io/eviction-strategy': 'LiveMigrate' } }, spec: (pod('x', {}).spec as object) },
      },
    }));
    const message = await eventually('the ReplicaSet reports its refused pod', () => {
      const conditions = z.array(z.object({ type: z.string(), message: z.string().optional() })).parse(
        JSON.parse(cluster.kubectl(['get', 'replicaset', 'unevictables', '-n', ns, '-o', 'jsonpath={.status.conditions}']) || '[]'));
      return conditions.find((c) => c.type === 'ReplicaFailure')?.message;
    }, 60_000);
    assert.match(message, /pod labels of keyvirt\.io and its subdomains are reserved to the KeyVirt operator: this request creates a pod with keyvirt\.io\/eviction-strategy/);
    assert.equal(cluster.kubectl(['get', 'pods', '-n', ns, '-l', 'app=unevictables', '-o', 'name']).trim(), '', 'no pod of it exists');
  });
});

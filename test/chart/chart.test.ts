// The Helm chart: lints, rejects bad values by its schema, renders objects the real
// API server accepts (server-side dry run), ships the generated CRDs unchanged, and
// its RBAC grants the operator and the node agent what they need and no more,
// checked with `kubectl auth can-i` as their service accounts.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { parseAllDocuments } from 'yaml';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const chart = path.join(repo, 'charts/keyvirt');
const helmBin = path.join(repo, 'hack/.cache/k8s/bin/helm');

interface Rendered {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: unknown };
  rules?: unknown[];
  spec?: unknown;
  data?: Record<string, string>;
}

function helm(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(helmBin, args, { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm') } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The Kubernetes version the local cluster runs (hack/k8s/pins.env); helm otherwise assumes v1.20. */
function kubeVersion(): string {
  const pins = fs.readFileSync(path.join(repo, 'hack/k8s/pins.env'), 'utf8');
  const m = /^KUBERNETES_VERSION=(\S+)$/m.exec(pins);
  if (m?.[1] === undefined) throw new Error('KUBERNETES_VERSION missing from hack/k8s/pins.env');
  return m[1];
}

function renderedObjects(yamlText: string): Rendered[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as Rendered | null)
    .filter((o): o is Rendered => o !== null);
}

describe('helm chart keyvirt', { timeout: 900_000 }, () => {
  let cluster: TestCluster;
  const ns = `kv-chart-${randomBytes(3).toString('hex')}`;
  const release = ns;
  const render = (...extra: string[]): string => {
    const r = helm(['template', release, chart, '--namespace', ns, '--kube-version', kubeVersion(), ...extra]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };

  before(async () => {
    execFileSync('bash', [path.join(repo, 'hack/k8s/build.sh'), 'helm'], { stdio: ['ignore', 'ignore', 'inherit'] });
    cluster = await ensureCluster();
    cluster.kubectl(['create', 'namespace', ns]);
  });

  after(() => {
    if (cluster === undefined) return;
    for (const args of [
      ['delete', 'namespace', ns, '--wait=false', '--ignore-not-found'],
      ['delete', 'clusterrole,clusterrolebinding', `${release}-operator`, `${release}-node-agent`, '--ignore-not-found'],
    ]) {
      try {
        cluster.kubectl(args);
      } catch {
        // best effort: the namespace name is unique to this run
      }
    }
    cluster.release();
  });

  test('lints cleanly', () => {
    const r = helm(['lint', '--strict', '--kube-version', kubeVersion(), chart]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('rejects values its schema forbids, naming the field', () => {
    const bad = helm(['template', release, chart, '--kube-version', kubeVersion(), '--set', 'operator.replicas=0']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /operator\.replicas|replicas/);
    const typo = helm(['template', release, chart, '--kube-version', kubeVersion(), '--set', 'operator.replica=2']);
    assert.notEqual(typo.status, 0);
    assert.match(typo.stderr, /replica/);
  });

  test('the agent restart grace is 0 or 5–300 s, and reaches the operator as its variable', () => {
    for (const bad of ['1', '4', '301', '-5', '2.5']) {
      const r = helm(['template', release, chart, '--kube-version', kubeVersion(), '--set', `highAvailability.agentRestartGraceSeconds=${bad}`]);
      assert.notEqual(r.status, 0, `accepted ${bad}`);
      assert.match(r.stderr, /highAvailability\/agentRestartGraceSeconds|highAvailability\.agentRestartGraceSeconds/, bad);
    }
    for (const ok of ['0', '5', '300']) {
      const operator = renderedObjects(render('--set', `highAvailability.agentRestartGraceSeconds=${ok}`)).find((o) => o.kind === 'Deployment' && o.metadata.name === 'keyvirt-operator');
      const env = z
        .object({ spec: z.object({ template: z.object({ spec: z.object({ containers: z.array(z.object({ env: z.array(z.object({ name: z.string(), value: z.string().optional() })) })) }) }) }) })
        .parse(operator)
        .spec.template.spec.containers.flatMap((c) => c.env);
      assert.deepEqual(env.filter((e) => e.name === 'KEYVIRT_OPERATOR_AGENT_RESTART_GRACE_SECONDS').map((e) => e.value), [ok]);
    }
  });

  test('renders the operator, its RBAC and the node agent, and ships the generated CRDs', () => {
    const objects = renderedObjects(render('--include-crds'));
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    for (const want of [
      'Deployment/keyvirt-operator',
      'DaemonSet/keyvirt-node-agent',
      'ServiceAccount/keyvirt-operator',
      `ClusterRole/${release}-operator`,
      `ClusterRoleBinding/${release}-node-agent`,
      'CustomResourceDefinition/virtualmachines.keyvirt.io',
      'CustomResourceDefinition/storagedomains.keyvirt.io',
      'CustomResourceDefinition/virtualmachinemigrations.keyvirt.io',
      'CustomResourceDefinition/migrationpolicies.keyvirt.io',
    ]) {
      assert.ok(kinds.includes(want), `missing ${want} in ${kinds.join(', ')}`);
    }
    const inChart = fs.readdirSync(path.join(chart, 'crds')).sort();
    const generated = fs.readdirSync(path.join(repo, 'crds/manifests')).sort();
    assert.deepEqual(inChart, generated);
    for (const f of inChart) {
      assert.equal(fs.readFileSync(path.join(chart, 'crds', f), 'utf8'), fs.readFileSync(path.join(repo, 'crds/manifests', f), 'utf8'), f);
    }
  });

  test('the launcher eviction webhook calls the operator at a path ending in the token the operator reads, trusting the serving CA', () => {
    const objects = renderedObjects(render());
    const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'keyvirt-subresources-tls');
    const config = z
      .object({
        webhooks: z.array(
          z.object({
            failurePolicy: z.string(),
            sideEffects: z.string(),
            clientConfig: z.object({ service: z.object({ name: z.string(), path: z.string() }), caBundle: z.string() }),
            rules: z.array(z.object({ operations: z.array(z.string()), apiGroups: z.array(z.string()), apiVersions: z.array(z.string()), resources: z.array(z.string()), scope: z.string() })),
            matchConditions: z.array(z.object({ expression: z.string() })),
          }),
        ),
      })
      .parse(objects.find((o) => o.kind === 'ValidatingWebhookConfiguration' && o.metadata.name === `${release}-launcher-eviction`));
    const token = Buffer.from(secret?.data?.['eviction-webhook-token'] ?? '', 'base64').toString();
    assert.match(token, /^[a-z0-9]{48}$/);
    const [hook] = config.webhooks;
    assert.equal(hook?.clientConfig.service.name, 'keyvirt-subresources');
    assert.equal(hook?.clientConfig.service.path, `/admission/launcher-eviction/${token}`);
    assert.equal(hook?.clientConfig.caBundle, secret?.data?.['ca.crt']);
    assert.deepEqual(hook?.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods/eviction'], scope: 'Namespaced' }]);
    assert.equal(hook?.failurePolicy, 'Fail');
    assert.equal(hook?.sideEffects, 'None');
    assert.deepEqual(hook?.matchConditions.map((m) => m.expression), ["request.name.startsWith('launcher-')"]);
    const deployment = JSON.stringify(objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'keyvirt-operator'));
    assert.match(deployment, /KEYVIRT_OPERATOR_EVICTION_WEBHOOK_TOKEN_FILE","value":"\/var\/run\/secrets\/keyvirt\/subresources\/eviction-webhook-token"/);
    assert.ok(!renderedObjects(render('--set', 'subresources.registerEvictionWebhook=false')).some((o) => o.kind === 'ValidatingWebhookConfiguration'));
  });

  test('the API server accepts every rendered object (server-side dry run)', () => {
    // Every namespaced object names its namespace (the release's, or kube-system for the
    // authentication-reader binding of the subresource server), so no -n here.
    const out = cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], render());
    assert.match(out, /deployment\.apps\/keyvirt-operator .*\(server dry run\)/);
    assert.match(out, /daemonset\.apps\/keyvirt-node-agent .*\(server dry run\)/);
  });

  test('RBAC grants the operator and node agent what they need, and no more', async () => {
    const rbac = render('--show-only', 'templates/rbac-operator.yaml', '--show-only', 'templates/node-agent.yaml');
    const rbacOnly = renderedObjects(rbac)
      .filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind))
      .map((o) => JSON.stringify(o))
      .join('\n');
    cluster.kubectl(['apply', '-n', ns, '-f', '-'], rbacOnly);
    const canI = (sa: string, verb: string, resource: string, namespace: string): boolean => {
      // `kind/name` means a named object to can-i: a subresource goes in --subresource.
      const [kind = resource, subresource] = resource.split('/');
      const sub = subresource === undefined ? [] : [`--subresource=${subresource}`];
      const res = spawnSync(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfig, 'auth', 'can-i', verb, kind, ...sub, '-n', namespace, `--as=system:serviceaccount:${ns}:${sa}`], { encoding: 'utf8' });
      return res.stdout.trim() === 'yes';
    };
    const expectations: [string, string, string, boolean, string?][] = [
      ['keyvirt-operator', 'create', 'pods', true],
      ['keyvirt-operator', 'delete', 'pods', true],
      ['keyvirt-operator', 'create', 'secrets', true],
      ['keyvirt-operator', 'patch', 'virtualmachines.keyvirt.io/status', true],
      ['keyvirt-operator', 'patch', 'storagedomains.keyvirt.io', true],
      ['keyvirt-operator', 'update', 'storagedomains.keyvirt.io', false],
      ['keyvirt-operator', 'update', 'virtualmachines.keyvirt.io/finalizers', true],
      ['keyvirt-operator', 'get', 'secrets', true],
      ['keyvirt-operator', 'list', 'secrets', false],
      ['keyvirt-operator', 'patch', 'nodes', false],
      ['keyvirt-operator', 'update', 'persistentvolumes', false],
      ['keyvirt-operator', 'update', 'virtualmachines.keyvirt.io/status', false],
      ['keyvirt-operator', 'create', 'persistentvolumes', true],
      ['keyvirt-operator', 'get', 'storageclasses.storage.k8s.io', true],
      ['keyvirt-operator', 'create', 'storageclasses.storage.k8s.io', false],
      ['keyvirt-operator', 'update', 'leases.coordination.k8s.io', true, ns],
      ['keyvirt-operator', 'update', 'leases.coordination.k8s.io', false, 'kube-node-lease'],
      ['keyvirt-operator', 'create', 'virtualmachines.keyvirt.io', false],
      ['keyvirt-operator', 'delete', 'nodes', false],
      ['keyvirt-operator', 'create', 'clusterrolebindings.rbac.authorization.k8s.io', false],
      ['keyvirt-node-agent', 'patch', 'nodes/status', true],
      ['keyvirt-node-agent', 'patch', 'nodes', true],
      ['keyvirt-node-agent', 'get', 'secrets', false],
      ['keyvirt-node-agent', 'create', 'pods', false],
    ];
    // RBAC objects take a moment to reach the authorizer's cache.
    const deadline = Date.now() + 30_000;
    let mismatches: string[] = [];
    do {
      mismatches = expectations
        .filter(([sa, verb, res, want, where]) => canI(sa, verb, res, where ?? 'default') !== want)
        .map(([sa, verb, res, want, where]) => `${sa} ${verb} ${res} in ${where ?? 'default'}: expected ${want ? 'allowed' : 'denied'}`);
      if (mismatches.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } while (Date.now() < deadline);
    assert.deepEqual(mismatches, []);
  });

  test('only the operator and the VM\'s launchers may reach a launcher\'s API port; other ports stay open (NetworkPolicy per VM namespace)', () => {
    interface Peer { namespaceSelector?: { matchLabels?: Record<string, string> }; podSelector?: { matchLabels?: Record<string, string> } }
    interface Port { protocol: string; port: number; endPort?: number }
    interface Policy extends Rendered { spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: { from?: Peer[]; ports: Port[] }[] } }
    assert.equal(renderedObjects(render()).filter((o) => o.kind === 'NetworkPolicy').length, 0, 'no policy without VM namespaces');
    const text = render('--set', `networkPolicy.vmNamespaces={${ns}}`, '--show-only', 'templates/launcher-network-policy.yaml');
    const policies = renderedObjects(text) as Policy[];
    assert.equal(policies.length, 1);
    const policy = policies[0];
    assert.ok(policy !== undefined);
    assert.equal(policy.metadata.namespace, ns);
    assert.deepEqual(policy.spec.podSelector.matchLabels, { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator' });
    assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
    const covers = (p: Port, port: number): boolean => p.protocol === 'TCP' && p.port <= port && port <= (p.endPort ?? p.port);
    const apiRules = policy.spec.ingress.filter((r) => r.ports.some((p) => covers(p, 8443)));
    assert.equal(apiRules.length, 1, 'exactly one rule opens 8443');
    assert.deepEqual(apiRules[0]?.from, [
      {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        podSelector: { matchLabels: { 'app.kubernetes.io/name': 'keyvirt-operator', 'app.kubernetes.io/instance': release } },
      },
      { podSelector: { matchLabels: { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator' } } },
    ]);
    const open = policy.spec.ingress.filter((r) => r.from === undefined);
    for (const port of [22, 80, 5900, 8442, 8444, 49152]) assert.ok(open.some((r) => r.ports.some((p) => covers(p, port))), `port ${port} closed`);
    const out = cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], text);
    assert.match(out, /networkpolicy\.networking\.k8s\.io\/keyvirt-launcher-api .*\(server dry run\)/);
  });

  test('launcher.host node-agent: the operator renders held pods, the agent runs their launchers privileged and sized for them', () => {
    interface Container { env: { name: string; value?: string }[]; resources: unknown; securityContext?: { privileged?: boolean } }
    type Workload = Rendered & { spec: { template: { spec: { containers: Container[] } } } };
    const container = (template: string, kind: string, args: string[]): Container | undefined =>
      (renderedObjects(render('--show-only', template, ...args)).find((o) => o.kind === kind) as Workload | undefined)?.spec.template.spec.containers[0];
    const envOf = (c: Container | undefined, name: string): string | undefined => c?.env.find((e) => e.name === name)?.value;
    const podsListed = (args: string[]): boolean => renderedObjects(render('--show-only', 'templates/node-agent.yaml', ...args))
      .some((o) => o.kind === 'ClusterRole' && JSON.stringify(o.rules).includes('"pods"'));
    const held = ['--set', 'launcher.host=node-agent', '--set', 'nodeAgent.podNetwork.enabled=false'];
    const plain = ['--set', 'nodeAgent.podNetwork.enabled=false'];
    assert.equal(envOf(container('templates/operator.yaml', 'Deployment', held), 'KEYVIRT_OPERATOR_LAUNCHER_HOST'), 'node-agent');
    assert.equal(envOf(container('templates/operator.yaml', 'Deployment', plain), 'KEYVIRT_OPERATOR_LAUNCHER_HOST'), 'pod');
    // Without the agent nothing would run a held pod's launcher: the operator keeps them in their pods.
    assert.equal(envOf(container('templates/operator.yaml', 'Deployment', [...held, '--set', 'nodeAgent.enabled=false']), 'KEYVIRT_OPERATOR_LAUNCHER_HOST'), 'pod');
    const agent = container('templates/node-agent.yaml', 'DaemonSet', held);
    assert.equal(envOf(agent, 'KEYVIRT_HELD_LAUNCHERS'), 'true');
    assert.equal(agent?.securityContext?.privileged, true);
    assert.deepEqual(agent?.resources, { requests: { cpu: '100m', memory: '160Mi' }, limits: { memory: '512Mi' } });
    assert.ok(podsListed(held), 'the agent lists its node\'s pods');
    const idle = container('templates/node-agent.yaml', 'DaemonSet', plain);
    assert.equal(envOf(idle, 'KEYVIRT_HELD_LAUNCHERS'), 'false');
    assert.equal(idle?.securityContext?.privileged, undefined);
    assert.deepEqual(idle?.resources, { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } });
    assert.ok(!podsListed(plain), 'without held launchers or pod networking the agent lists no pods');
    const bad = helm(['template', release, chart, '--kube-version', kubeVersion(), '--set', 'launcher.host=node']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /launcher\.host|host/);
  });

  test('the operator serves its probes on the pod address and /metrics on loopback unless told otherwise', () => {
    interface Container { env: { name: string; value?: string }[]; ports: { name: string; containerPort: number }[]; livenessProbe: { httpGet: { port: string } } }
    const deployment = (args: string[]): Container | undefined => {
      const d = renderedObjects(render('--show-only', 'templates/operator.yaml', ...args)).find((o) => o.kind === 'Deployment') as
        | (Rendered & { spec: { template: { spec: { containers: Container[] } } } })
        | undefined;
      return d?.spec.template.spec.containers[0];
    };
    const envOf = (c: Container | undefined, name: string): string | undefined => c?.env.find((e) => e.name === name)?.value;
    const byDefault = deployment([]);
    assert.equal(envOf(byDefault, 'KEYVIRT_OPERATOR_METRICS_ADDRESS'), '127.0.0.1:8081');
    assert.equal(envOf(byDefault, 'KEYVIRT_OPERATOR_HEALTH_ADDRESS'), '0.0.0.0:8080');
    assert.equal(byDefault?.livenessProbe.httpGet.port, 'health');
    const exposed = deployment(['--set', 'operator.metricsAddress=0.0.0.0:9100']);
    assert.equal(envOf(exposed, 'KEYVIRT_OPERATOR_METRICS_ADDRESS'), '0.0.0.0:9100');
    assert.deepEqual(exposed?.ports.find((p) => p.name === 'metrics')?.containerPort, 9100);
  });

  test('the operator\'s rules equal operator/deploy/rbac.yaml, which the local cluster runs the operator under', () => {
    const rulesOf = (objects: Rendered[], kind: string): unknown[] => {
      const operatorOwned = (name: string): boolean => name.endsWith('operator') || name.endsWith('leader-election');
      return objects.filter((o) => o.kind === kind && operatorOwned(o.metadata.name)).map((o) => o.rules ?? []);
    };
    const chartObjects = renderedObjects(render('--show-only', 'templates/rbac-operator.yaml'));
    const shipped = renderedObjects(fs.readFileSync(path.join(repo, 'operator/deploy/rbac.yaml'), 'utf8'));
    assert.deepEqual(rulesOf(chartObjects, 'ClusterRole'), rulesOf(shipped, 'ClusterRole'));
    assert.deepEqual(rulesOf(chartObjects, 'Role'), rulesOf(shipped, 'Role'));
  });

  test('the admission policies equal those of operator/deploy/rbac.yaml, which the local cluster runs the operator under', () => {
    // Released as `keyvirt` in keyvirt-system, the chart's policies are the shipped ones, name for
    // name, but for the two values written into them: the launcher image (the same by default) and
    // the hostPath pattern (the local cluster's adds /tmp and the test guests' cache).
    const r = helm(['template', 'keyvirt', chart, '--namespace', 'keyvirt-system', '--kube-version', kubeVersion(), '--show-only', 'templates/admission-policy.yaml']);
    assert.equal(r.status, 0, r.stderr);
    const settings = new Map<string, string[]>();
    const policies = (objects: Rendered[], from: string): Record<string, unknown> => Object.fromEntries(objects
      .filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy'))
      .map((o) => {
        const spec = structuredClone(o.spec) as { variables?: { name: string; expression: string }[] };
        for (const v of spec.variables ?? []) {
          if (v.name !== 'launcherImage' && v.name !== 'hostPathPattern') continue;
          // A CEL string literal in JSON's syntax, which CEL reads alike.
          settings.set(`${from} ${v.name}`, [...settings.get(`${from} ${v.name}`) ?? [], z.string().parse(JSON.parse(v.expression))]);
          v.expression = `<${v.name}>`;
        }
        return [`${o.kind}/${o.metadata.name}`, spec];
      }));
    const chartObjects = renderedObjects(r.stdout);
    const shipped = renderedObjects(fs.readFileSync(path.join(repo, 'operator/deploy/rbac.yaml'), 'utf8'));
    const shippedPolicies = policies(shipped, 'shipped');
    assert.deepEqual(policies(chartObjects, 'chart'), shippedPolicies);
    assert.equal(Object.keys(shippedPolicies).length, 10, 'five policies, five bindings');
    assert.deepEqual(settings.get('chart launcherImage'), ['localhost/keyvirt/launcher:0.1.0']);
    assert.deepEqual(settings.get('shipped launcherImage'), settings.get('chart launcherImage'));
    assert.deepEqual(settings.get('chart hostPathPattern'), ['^/var/lib/keyvirt/', '^/var/lib/keyvirt/']);
    assert.deepEqual(settings.get('shipped hostPathPattern'), ['^(/var/lib/keyvirt/|/tmp/|/.+/hack/\\.cache/guest/)', '^(/var/lib/keyvirt/|/tmp/|/.+/hack/\\.cache/guest/)']);
  });

  test('no admission policy depends on a parameter object, whose absence would deny every pod write in the cluster', () => {
    const r = helm(['template', 'keyvirt', chart, '--namespace', 'keyvirt-system', '--kube-version', kubeVersion()]);
    assert.equal(r.status, 0, r.stderr);
    const shipped = renderedObjects(fs.readFileSync(path.join(repo, 'operator/deploy/rbac.yaml'), 'utf8'));
    for (const o of [...renderedObjects(r.stdout), ...shipped].filter((x) => x.kind.startsWith('ValidatingAdmissionPolicy'))) {
      const spec = z.looseObject({ paramKind: z.unknown().optional(), paramRef: z.unknown().optional() }).parse(o.spec);
      assert.equal(spec.paramKind, undefined, `${o.kind}/${o.metadata.name} has a paramKind`);
      assert.equal(spec.paramRef, undefined, `${o.kind}/${o.metadata.name} has a paramRef`);
    }
  });
});

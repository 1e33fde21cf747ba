// The chart's monitoring objects (ADR 0069): the rendered PrometheusRule passes
// `promtool check rules` (promtool built from its Go module, hack/k8s/promtool) and its
// alerts fire on sample series (`promtool test rules`); the dashboard ConfigMap holds
// valid JSON; every keyvirt_* metric the rules and the dashboard's queries name exists
// in the registries of the operator and the node agent, whose names are read from the
// code (the registries themselves, and every metric constructor in operator/src).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { z } from 'zod';
import { OperatorMetrics } from '../../operator/src/metrics.ts';
import { ensureCluster } from '../support/cluster.ts';
import { VmMetricsExposition } from '../../operator/src/node-agent/vm-metrics-exposition.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const chart = path.join(repo, 'charts/keyvirt');
const helmBin = path.join(repo, 'hack/.cache/k8s/bin/helm');

function kubeVersion(): string {
  const pins = readFileSync(path.join(repo, 'hack/k8s/pins.env'), 'utf8');
  return /^KUBERNETES_VERSION=(\S+)$/m.exec(pins)?.[1] ?? 'v1.34.0';
}

function renderText(values: readonly string[], options: { namespace?: string; only?: readonly string[] } = {}): string {
  const args = ['template', 'keyvirt', chart, '--namespace', options.namespace ?? 'keyvirt-system', '--kube-version', kubeVersion(), ...values.flatMap((v) => ['--set', v])];
  for (const t of options.only ?? []) args.push('--show-only', t);
  return execFileSync(helmBin, args, { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm') } });
}

function render(...values: string[]): unknown[] {
  return parseAllDocuments(renderText(values)).map((d) => d.toJS() as unknown).filter((o) => o !== null);
}

const RuleSchema = z.object({ alert: z.string(), expr: z.string(), for: z.string().optional() }).loose();
const PrometheusRuleSchema = z.object({ kind: z.literal('PrometheusRule'), spec: z.object({ groups: z.array(z.object({ name: z.string(), rules: z.array(RuleSchema) }).loose()) }) });
const DashboardMapSchema = z.object({ kind: z.literal('ConfigMap'), metadata: z.object({ labels: z.record(z.string(), z.string()) }), data: z.object({ 'keyvirt-vms.json': z.string() }) });
const DashboardSchema = z.object({
  title: z.string(),
  uid: z.string(),
  panels: z.array(z.object({ type: z.string(), title: z.string(), targets: z.array(z.object({ expr: z.string() })).optional() })),
  templating: z.object({ list: z.array(z.object({ name: z.string(), query: z.union([z.string(), z.object({ query: z.string() })]).optional() })) }),
});

/** Metric names the code registers: the operator's and node agent's registries, and every metric constructor in operator/src. */
function registeredNames(): Set<string> {
  const names = new Set<string>();
  for (const registry of [new OperatorMetrics().registry, new VmMetricsExposition('n').registry]) {
    for (const m of registry.getMetricsAsArray()) names.add(m.name);
  }
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => {
      const p = path.join(dir, f);
      return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
    });
  for (const file of walk(path.join(repo, 'operator/src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/new (?:Counter|Gauge|Histogram|Summary)\(\{\s*name: '(keyvirt_[a-z0-9_]+)'/g)) if (m[1] !== undefined) names.add(m[1]);
  }
  return names;
}

/** keyvirt_* names a PromQL expression uses that no registry has (histogram suffixes allowed). */
function unknownMetrics(expr: string, known: ReadonlySet<string>): string[] {
  const used = [...expr.matchAll(/\b(keyvirt_[a-z0-9_]+)\b/g)].map((m) => m[1] ?? '');
  return used.filter((n) => !known.has(n) && !known.has(n.replace(/_(bucket|sum|count)$/, '')));
}

void describe('chart monitoring: alerts and dashboard', { timeout: 300_000 }, () => {
  let dir: string;
  let promtool: string;
  const known = registeredNames();

  before(async () => {
    execFileSync('bash', [path.join(repo, 'hack/k8s/build.sh'), 'helm'], { stdio: ['ignore', 'ignore', 'inherit'] });
    promtool = execFileSync('bash', [path.join(repo, 'hack/k8s/promtool/build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1) ?? '';
    dir = await mkdtemp(path.join(tmpdir(), 'kv-monitoring-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  void it('renders no monitoring object by default', () => {
    const kinds = render().map((o) => z.object({ kind: z.string(), metadata: z.object({ name: z.string() }) }).parse(o));
    assert.deepEqual(kinds.filter((o) => ['PrometheusRule', 'ServiceMonitor'].includes(o.kind) || /metrics|dashboard/.test(o.metadata.name)).map((o) => `${o.kind}/${o.metadata.name}`), ['Service/keyvirt-operator-metrics']);
  });

  void it('knows the metrics the code registers, and would catch a name it does not', () => {
    for (const name of ['keyvirt_vmi_vcpu_seconds_total', 'keyvirt_vm_phase_count', 'keyvirt_storage_domain_free_bytes', 'keyvirt_ha_restarts_total', 'keyvirt_operator_leader']) assert.ok(known.has(name), name);
    assert.deepEqual(unknownMetrics('rate(keyvirt_vmi_cpu_usage_seconds_total[5m])', known), ['keyvirt_vmi_cpu_usage_seconds_total']);
  });

  void it('the PrometheusRule passes promtool check rules and names existing metrics', async () => {
    const rule = render('monitoring.prometheusRule.enabled=true').map((o) => PrometheusRuleSchema.safeParse(o)).find((r) => r.success)?.data;
    assert.ok(rule !== undefined, 'a PrometheusRule is rendered');
    const alerts = rule.spec.groups.flatMap((g) => g.rules.map((r) => r.alert));
    for (const a of ['KeyVirtVMDown', 'KeyVirtMigrationFailed', 'KeyVirtHARestart', 'KeyVirtStorageDomainLowSpace', 'KeyVirtStorageDomainCriticalSpace', 'KeyVirtLauncherUnreachable', 'KeyVirtOperatorNotLeading', 'KeyVirtNodeAgentError']) assert.ok(alerts.includes(a), a);
    for (const r of rule.spec.groups.flatMap((g) => g.rules)) assert.deepEqual(unknownMetrics(r.expr, known), [], r.alert);
    const file = path.join(dir, 'rules.yaml');
    await writeFile(file, stringify({ groups: rule.spec.groups }));
    const check = spawnSync(promtool, ['check', 'rules', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 8 rules found/);
  });

  void it('the alerts fire on sample series (promtool test rules)', async () => {
    const tests = {
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            { series: 'keyvirt_storage_domain_capacity_bytes{domain="shared"}', values: '1000x20' },
            { series: 'keyvirt_storage_domain_used_bytes{domain="shared"}', values: '500x5 850x15' },
            { series: 'keyvirt_storage_domain_free_bytes{domain="shared"}', values: '500x5 150x15' },
            { series: 'keyvirt_storage_domain_warning_ratio{domain="shared"}', values: '0.8x20' },
            { series: 'keyvirt_storage_domain_critical_free_bytes{domain="shared"}', values: '200x20' },
            { series: 'keyvirt_vmi_launcher_up{namespace="t",name="web",node="n1",reason="timeout"}', values: '0x10' },
            { series: 'keyvirt_vmi_launcher_up{namespace="t",name="db",node="n1",reason=""}', values: '1x10' },
            { series: 'keyvirt_operator_leader{pod="a"}', values: '1x3 0x10' },
            { series: 'keyvirt_operator_leader{pod="b"}', values: '0x13' },
            { series: 'keyvirt_node_agent_uncaught_errors_total{node="n2",instance="a"}', values: '0x5 1x10' },
            { series: 'keyvirt_node_agent_uncaught_errors_total{node="n1",instance="b"}', values: '0x15' },
          ],
          alert_rule_test: [
            { eval_time: '4m', alertname: 'KeyVirtStorageDomainLowSpace', exp_alerts: [] },
            { eval_time: '17m', alertname: 'KeyVirtStorageDomainLowSpace', exp_alerts: [{ exp_labels: { severity: 'warning', domain: 'shared' }, exp_annotations: { summary: 'StorageDomain shared is low on space', description: 'Its used share has reached its warning threshold (spec.thresholds.warningPercent).' } }] },
            { eval_time: '12m', alertname: 'KeyVirtStorageDomainCriticalSpace', exp_alerts: [{ exp_labels: { severity: 'critical', domain: 'shared' }, exp_annotations: { summary: 'StorageDomain shared is below its critical free space', description: 'No new disk is created on it until space is freed (spec.thresholds.criticalFreeGiB).' } }] },
            { eval_time: '6m', alertname: 'KeyVirtLauncherUnreachable', exp_alerts: [{ exp_labels: { severity: 'warning', namespace: 't', name: 'web', node: 'n1' }, exp_annotations: { summary: 'The launcher of VM t/web does not answer', description: "The node agent of n1 has not read the VM's launcher for 5 minutes." } }] },
            { eval_time: '5m', alertname: 'KeyVirtOperatorNotLeading', exp_alerts: [] },
            { eval_time: '4m', alertname: 'KeyVirtNodeAgentError', exp_alerts: [] },
            { eval_time: '8m', alertname: 'KeyVirtNodeAgentError', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'n2' }, exp_annotations: { summary: 'The node agent of n2 survived an error nobody caught', description: "The node's held VMs kept running; the agent's log (component safety-net) has the error and its stack. It is a KeyVirt bug: report it." } }] },
            { eval_time: '10m', alertname: 'KeyVirtOperatorNotLeading', exp_alerts: [{ exp_labels: { severity: 'critical' }, exp_annotations: { summary: 'No KeyVirt operator replica holds the leader lease', description: 'No VM is started, stopped, migrated or restarted until a replica leads again.' } }] },
          ],
        },
      ],
    };
    const file = path.join(dir, 'rules.test.yaml');
    await writeFile(file, stringify(tests));
    const run = spawnSync(promtool, ['test', 'rules', file], { encoding: 'utf8', cwd: dir });
    assert.equal(run.status, 0, run.stdout + run.stderr);
  });

  void it('the API server accepts the per-VM metrics objects (server-side dry run)', async () => {
    const cluster = await ensureCluster();
    const ns = `kv-monitoring-${Math.random().toString(36).slice(2, 8)}`;
    cluster.kubectl(['create', 'namespace', ns]);
    try {
      const text = renderText(['monitoring.vmMetrics.enabled=true', `networkPolicy.vmNamespaces={${ns}}`], {
        namespace: ns,
        only: ['templates/monitoring-vm-metrics.yaml', 'templates/node-agent.yaml', 'templates/operator.yaml', 'templates/launcher-network-policy.yaml'],
      });
      const out = cluster.kubectl(['apply', '--dry-run=server', '-n', ns, '-f', '-'], text);
      for (const want of ['secret/keyvirt-metrics-key', 'clusterrole.rbac.authorization.k8s.io/keyvirt-node-agent-metrics', 'service/keyvirt-node-agent-metrics', 'daemonset.apps/keyvirt-node-agent', 'deployment.apps/keyvirt-operator', 'networkpolicy.networking.k8s.io/keyvirt-launcher-api']) {
        assert.match(out, new RegExp(`${want.replaceAll('.', '\\.')} .*\\(server dry run\\)`), want);
      }
    } finally {
      cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
    }
  });

  void it('the dashboard is valid JSON whose queries name existing metrics', () => {
    const map = render('monitoring.dashboard.enabled=true').map((o) => DashboardMapSchema.safeParse(o)).find((r) => r.success)?.data;
    assert.ok(map !== undefined, 'the dashboard ConfigMap is rendered');
    assert.equal(map.metadata.labels.grafana_dashboard, '1');
    const dashboard = DashboardSchema.parse(JSON.parse(map.data['keyvirt-vms.json']));
    const queries = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
      ...dashboard.templating.list.flatMap((v) => (v.query === undefined ? [] : [{ where: `$${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query.query }])),
    ];
    assert.ok(queries.length >= 20, `${queries.length} queries`);
    for (const q of queries) assert.deepEqual(unknownMetrics(q.expr, known), [], q.where);
    const titles = dashboard.panels.map((p) => p.title).join(' | ');
    for (const want of ['VMs by phase', 'vCPU usage', 'QEMU resident memory', 'Disk throughput', 'Network throughput', 'Migration progress', 'Storage domain capacity']) assert.ok(titles.includes(want), want);
  });
});

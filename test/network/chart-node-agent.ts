// The chart's node agent for the pod-network suites: its ServiceAccount, RBAC and
// DaemonSet pod as `helm template` renders them (pod network set-up on; device plugins
// are the node simulator's own), the pod pinned to one node. Returns the cluster-scoped
// objects to delete afterwards.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { z } from 'zod';
import type { TestCluster } from '../support/cluster.ts';
import { apply } from '../operator/vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const Rendered = z.object({ kind: z.string(), metadata: z.object({ name: z.string() }).loose() }).loose();
const DaemonSet = z.object({ spec: z.object({ template: z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()) }).loose(), spec: z.record(z.string(), z.unknown()) }) }) });

/** `sets`: further `--set key=value` pairs, after the suites' defaults. */
export function startChartNodeAgent(cluster: TestCluster, release: string, namespace: string, nodeName: string, sets: readonly string[] = []): string[][] {
  const helm = path.join(repoRoot, 'hack/.cache/k8s/bin/helm');
  const out = execFileSync(helm, [
    'template', release, path.join(repoRoot, 'charts/keyvirt'), '--namespace', namespace, '--kube-version', '1.34.0',
    '--set', 'nodeAgent.podNetwork.enabled=true', '--set', 'nodeAgent.devicePlugins.enabled=false', '--set', 'monitoring.vmMetrics.enabled=false',
    ...sets.flatMap((set) => ['--set', set]),
    '--show-only', 'templates/node-agent.yaml',
  ], { encoding: 'utf8' });
  const docs = out.split(/^---$/m).map((d) => d.trim()).filter((d) => d !== '')
    .map((d) => Rendered.parse(JSON.parse(cluster.kubectl(['create', '--dry-run=client', '-o', 'json', '-f', '-'], d))));
  const clusterScoped: string[][] = [];
  for (const doc of docs) {
    if (doc.kind === 'DaemonSet') {
      const template = DaemonSet.parse(doc).spec.template;
      apply(cluster, { apiVersion: 'v1', kind: 'Pod', metadata: { name: `node-agent-${nodeName}`, namespace, labels: template.metadata.labels }, spec: { ...template.spec, nodeName } });
    } else {
      apply(cluster, doc);
      if (doc.kind.startsWith('ClusterRole')) clusterScoped.push([doc.kind.toLowerCase(), doc.metadata.name]);
    }
  }
  return clusterScoped;
}

// A KeyVirt release installed with `helm install` into the shared local cluster, scoped
// so that it disturbs no other suite's operator (docs/adr/0083): its own release
// namespace (leader Lease, ServiceAccounts, subresource certificate), release-named
// cluster objects, an operator that manages only VMs and StorageDomains labelled with
// the suite's run id, operator and node agent only on the suite's own nodes (labelled
// with the run id, tolerating their taint), and neither the cluster's one APIService,
// the launcher eviction webhook nor the cluster-wide user roles, which the subresource
// suites own here.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { throwawayTaintKey, type TestCluster } from '../support/cluster.ts';

const repo = path.resolve(import.meta.dirname, '../..');
export const chartDir = path.join(repo, 'charts/keyvirt');
const helmBin = path.join(repo, 'hack/.cache/k8s/bin/helm');

export class HelmError extends Error {
  override readonly name = 'HelmError';
}

export interface ReleaseOptions {
  /** Helm release name (cluster objects are named after it). */
  readonly release: string;
  /** Where the operator and the node agent run. */
  readonly namespace: string;
  /** The suite's run id: VMs, domains and nodes of the release carry `keyvirt.io/test-run=<runId>`. */
  readonly runId: string;
  /** Namespaces where the release's VMs run (their launcher NetworkPolicy). */
  readonly vmNamespaces: readonly string[];
  /** RE2 pattern of the hostPath directories launcher pods may mount (storage domains, kernels). */
  readonly hostPathPattern: string;
  /** The API server as pods reach it (there is no kube-proxy here: never the `kubernetes` Service's ClusterIP). */
  readonly apiServer: { readonly host: string; readonly port: number };
  /** Image values (operator, launcher, nodeAgent); the chart's defaults when absent. */
  readonly images?: Readonly<Record<'operator' | 'launcher' | 'nodeAgent', { registry: string; repository: string; tag: string; pullPolicy: string }>>;
  /** Where the operator and the node agent run; by default the nodes labelled with the run id (throwaway nodes). */
  readonly placement?: { readonly nodeSelector: Readonly<Record<string, string>>; readonly tolerations: readonly unknown[] };
  /** Operator replicas (default 1); more than one are spread over nodes, one per node. */
  readonly operatorReplicas?: number;
  /**
   * The node agent prepares launcher pods' networks (chart default). Off by default here:
   * on a simulated node the agent's hostPath /proc is its own PID namespace's, so it never
   * finds a pod's process; the node agent image has neither `ip` nor `iptables`. VMs then
   * use QEMU's user-mode network (masquerade as before).
   */
  readonly podNetwork?: boolean;
}

export const TEST_RUN_LABEL = 'keyvirt.io/test-run';

/** The values a suite's release is installed with (written to a file: the patterns need no --set escaping). */
export function releaseValues(o: ReleaseOptions): Record<string, unknown> {
  const onSuiteNodes = o.placement ?? {
    nodeSelector: { [TEST_RUN_LABEL]: o.runId },
    tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
  };
  const replicas = o.operatorReplicas ?? 1;
  const spread = {
    podAntiAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: [
        { labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'keyvirt-operator', 'app.kubernetes.io/instance': o.release } }, topologyKey: 'kubernetes.io/hostname' },
      ],
    },
  };
  const image = (part: 'operator' | 'launcher' | 'nodeAgent'): Record<string, unknown> => (o.images === undefined ? {} : { image: o.images[part] });
  return {
    operator: {
      ...image('operator'),
      // One replica by default: leader election still runs, and a rolling upgrade hands over to a new pod.
      replicas,
      // One per node (required anti-affinity): an upgrade must replace a pod before it starts one.
      ...(replicas > 1 ? { affinity: spread, updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } } } : {}),
      vmSelector: `${TEST_RUN_LABEL}=${o.runId}`,
      storageDomainSelector: `${TEST_RUN_LABEL}=${o.runId}`,
      ...onSuiteNodes,
    },
    launcher: { ...image('launcher'), hostPathPattern: o.hostPathPattern },
    nodeAgent: { ...image('nodeAgent'), nodeSelector: onSuiteNodes.nodeSelector, tolerations: onSuiteNodes.tolerations, podNetwork: { enabled: o.podNetwork ?? false } },
    allowEmulation: true,
    kubernetesApi: { host: o.apiServer.host, port: o.apiServer.port },
    networkPolicy: { enabled: true, vmNamespaces: o.vmNamespaces },
    subresources: { registerAPIService: false, registerEvictionWebhook: false },
    userRoles: { create: false },
  };
}

export interface HelmResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the pinned helm against the cluster as admin. */
export function helm(cluster: TestCluster, args: readonly string[]): HelmResult {
  const r = spawnSync(helmBin, [...args, '--kubeconfig', cluster.kubeconfig], {
    encoding: 'utf8',
    env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm'), HELM_CONFIG_HOME: path.join(repo, 'hack/.cache/helm/config'), HELM_DATA_HOME: path.join(repo, 'hack/.cache/helm/data') },
    timeout: 15 * 60_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs helm and throws HelmError (with its output) unless it exits 0. */
export function helmOk(cluster: TestCluster, args: readonly string[]): string {
  const r = helm(cluster, args);
  if (r.status !== 0) throw new HelmError(`helm ${args.slice(0, 2).join(' ')} failed (${r.status}): ${r.stderr.trim()} ${r.stdout.trim()}`);
  return r.stdout;
}

/** Writes the values file of a release into `dir`; returns its path. */
export function writeValues(dir: string, values: Record<string, unknown>, name = 'values.json'): string {
  const file = path.join(dir, name);
  // JSON is YAML: helm reads it as a values file.
  writeFileSync(file, JSON.stringify(values, null, 2));
  return file;
}

const namedList = z.object({
  items: z.array(z.object({ kind: z.string(), metadata: z.object({ name: z.string(), namespace: z.string().optional() }) })),
});

/** Every listable kind the API server serves, as `resource.group` names kubectl accepts. */
export function listableKinds(cluster: TestCluster, namespaced: boolean): string[] {
  return cluster
    .kubectl(['api-resources', '--verbs=list', `--namespaced=${String(namespaced)}`, '-o', 'name'])
    .split('\n')
    .filter((r) => r !== '' && r !== 'events' && r !== 'events.events.k8s.io');
}

/** `Kind/name` (with `namespace/` in front when namespaced) of every object matching `selectorOrNamespace`. */
export function objectsWhere(cluster: TestCluster, where: { labelSelector: string } | { namespace: string }): string[] {
  const out: string[] = [];
  for (const namespaced of [true, false]) {
    if ('namespace' in where && !namespaced) continue;
    const kinds = listableKinds(cluster, namespaced);
    const scope = 'namespace' in where ? ['-n', where.namespace] : namespaced ? ['-A', '-l', where.labelSelector] : ['-l', where.labelSelector];
    const text = cluster.kubectl(['get', kinds.join(','), ...scope, '-o', 'json', '--ignore-not-found']);
    if (text.trim() === '') continue;
    for (const item of namedList.parse(JSON.parse(text)).items) {
      out.push(`${item.metadata.namespace === undefined ? '' : `${item.metadata.namespace}/`}${item.kind}/${item.metadata.name}`);
    }
  }
  return out.sort();
}

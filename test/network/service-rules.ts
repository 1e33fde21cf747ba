// A ClusterIP Service in a suite's namespace, and the wait that comes before any packet
// to its ClusterIP: the ClusterIP routes onto the cluster bridge (never off the machine,
// ADR 0099), the EndpointSlice lists the expected pod ready, and the host's kube-proxy
// has written the DNAT from the ClusterIP to that pod.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { z } from 'zod';
import { network, serviceClusterIpRange } from '../../hack/cluster/layout.ts';
import { cidrsOverlap } from '../../hack/cluster/service-network.ts';
import { eventually, type TestCluster } from '../support/cluster.ts';

const run = promisify(execFile);

export interface ServicePort {
  readonly name: string;
  readonly port: number;
  readonly targetPort: number;
}

const serviceShape = z.object({ spec: z.object({ clusterIP: z.string() }) });
const sliceList = z.object({
  items: z.array(z.object({
    endpoints: z.array(z.object({ addresses: z.array(z.string()), conditions: z.object({ ready: z.boolean().optional() }).optional() })).nullish(),
  })),
});

/** Creates a ClusterIP Service with `selector` and returns its ClusterIP. */
export function createService(cluster: TestCluster, namespace: string, name: string, selector: Record<string, string>, port: ServicePort): string {
  cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace },
    spec: { type: 'ClusterIP', selector, ports: [{ name: port.name, protocol: 'TCP', port: port.port, targetPort: port.targetPort }] },
  }));
  const clusterIp = serviceShape.parse(JSON.parse(cluster.kubectl(['get', 'service', name, '-n', namespace, '-o', 'json']))).spec.clusterIP;
  assert.ok(cidrsOverlap(clusterIp, serviceClusterIpRange), `ClusterIP ${clusterIp} inside ${serviceClusterIpRange}`);
  return clusterIp;
}

/** Fails unless the host routes `clusterIp` onto the cluster bridge. */
export async function assertRoutedOntoBridge(clusterIp: string): Promise<void> {
  const { stdout } = await run('ip', ['-4', 'route', 'get', clusterIp]);
  assert.match(stdout, new RegExp(`^${clusterIp.replaceAll('.', '\\.')} dev ${network.bridge} `), `route to ${clusterIp}: ${stdout.trim()}`);
}

/** The ready addresses the Service's EndpointSlices list. */
export function readyEndpoints(cluster: TestCluster, namespace: string, name: string): string[] {
  const slices = sliceList.parse(JSON.parse(cluster.kubectl(['get', 'endpointslices', '-n', namespace, '-l', `kubernetes.io/service-name=${name}`, '-o', 'json'])));
  return slices.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses));
}

/** True when the host's nat table sends `clusterIp:port` of the Service to `endpoint:targetPort`. */
export async function kubeProxyRoutes(namespace: string, name: string, clusterIp: string, port: ServicePort, endpoint: string): Promise<boolean> {
  const { stdout } = await run('iptables-save', ['-t', 'nat'], { maxBuffer: 64 * 1024 * 1024 });
  const service = `${namespace}/${name}:${port.name}`;
  const lines = stdout.split('\n');
  const portal = lines.some((l) => l.includes(`-d ${clusterIp}/32`) && l.includes(`"${service} cluster IP"`) && l.includes(`--dport ${port.port} `) && l.includes('-j KUBE-SVC-'));
  const dnat = lines.some((l) => l.includes(`"${service}"`) && l.includes(`-j DNAT --to-destination ${endpoint}:${port.targetPort}`));
  return portal && dnat;
}

class EndpointNotReadyError extends Error {
  override readonly name = 'EndpointNotReadyError';
}

/** What the Service's slices and the namespace's pods say, for a failed wait. */
function endpointState(cluster: TestCluster, namespace: string, name: string): string {
  const slices = cluster.kubectl(['get', 'endpointslices', '-n', namespace, '-l', `kubernetes.io/service-name=${name}`, '-o',
    'jsonpath={range .items[*].endpoints[*]}{.addresses[0]} ready={.conditions.ready} serving={.conditions.serving}; {end}']);
  const pods = cluster.kubectl(['get', 'pods', '-n', namespace, '-o',
    'jsonpath={range .items[*]}{.metadata.name} ip={.status.podIP} phase={.status.phase} ready={.status.conditions[?(@.type=="Ready")].status} labels={.metadata.labels}; {end}']);
  return `slices: ${slices || 'none'} pods: ${pods || 'none'}`;
}

export interface RoutedService {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIp: string;
  readonly port: ServicePort;
}

/** Waits until the Service's ClusterIP leads to `endpoint` on this host; only then may a test dial the ClusterIP. */
export async function waitServiceRouted(cluster: TestCluster, service: RoutedService, endpoint: string, timeoutMs: number): Promise<void> {
  const { namespace, name, clusterIp, port } = service;
  await assertRoutedOntoBridge(clusterIp);
  await eventually(`the EndpointSlice of ${namespace}/${name} listing ${endpoint} ready`, () => {
    if (readyEndpoints(cluster, namespace, name).includes(endpoint)) return true;
    throw new EndpointNotReadyError(endpointState(cluster, namespace, name));
  }, timeoutMs, 500);
  await eventually(`kube-proxy's rules from ${clusterIp}:${port.port} to ${endpoint}:${port.targetPort}`,
    async () => ((await kubeProxyRoutes(namespace, name, clusterIp, port, endpoint)) ? true : undefined), timeoutMs, 500);
}

// Decisions about the Service network of the local cluster, free of I/O: whether the
// Service CIDR collides with an address or route the host already has, the route that
// keeps every ClusterIP on the cluster bridge, and kube-proxy's configuration.
import { stringify } from 'yaml';
import { network, serviceClusterIpRange } from './layout.ts';

export class ServiceRangeConflictError extends Error {
  override readonly name = 'ServiceRangeConflictError';
}

interface Cidr {
  readonly base: number;
  readonly bits: number;
}

function ipv4ToNumber(address: string): number {
  const bytes = address.split('.').map((b) => Number(b));
  if (bytes.length !== 4 || bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) throw new RangeError(`not an IPv4 address: ${address}`);
  return bytes.reduce((n, b) => n * 256 + b, 0);
}

/** `a.b.c.d/n` (or a bare address, /32) as its network base and prefix length. */
export function parseCidr(text: string): Cidr {
  const [address = '', prefix = '32'] = text.split('/');
  const bits = Number(prefix);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new RangeError(`not an IPv4 prefix length: ${text}`);
  const size = 2 ** (32 - bits);
  return { base: Math.floor(ipv4ToNumber(address) / size) * size, bits };
}

export function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  const bits = Math.min(x.bits, y.bits);
  const size = 2 ** (32 - bits);
  return Math.floor(x.base / size) === Math.floor(y.base / size);
}

const routeTypes = new Set(['unicast', 'local', 'broadcast', 'multicast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'nat', 'anycast']);

/** The route this cluster adds: the whole Service CIDR onto the cluster bridge. */
export function serviceRouteArgs(range: string = serviceClusterIpRange): string[] {
  return ['route', 'replace', range, 'dev', network.bridge];
}

/**
 * What on the host already uses part of the Service CIDR: an interface address inside it,
 * or a route (other than the default route and this cluster's own Service route) whose
 * destination overlaps it. Any of them means a ClusterIP could be a real machine's address.
 * `addresses` are `ip -4 -o addr show` lines, `routes` `ip -4 route show table all` lines.
 */
export function serviceRangeConflicts(addresses: readonly string[], routes: readonly string[], range: string = serviceClusterIpRange): string[] {
  const conflicts: string[] = [];
  for (const line of addresses) {
    const fields = line.trim().split(/\s+/);
    const at = fields.indexOf('inet');
    const cidr = at < 0 ? undefined : fields[at + 1];
    if (cidr !== undefined && cidrsOverlap(cidr, range)) conflicts.push(`address ${cidr} on ${fields[1] ?? '?'}`);
  }
  for (const line of routes) {
    const fields = line.trim().split(/\s+/);
    const dst = routeTypes.has(fields[0] ?? '') ? fields[1] : fields[0];
    if (dst === undefined || dst === '' || dst === 'default') continue;
    const dev = fields[fields.indexOf('dev') + 1];
    if (dst === range && fields.includes('dev') && dev === network.bridge) continue;
    if (cidrsOverlap(dst, range)) conflicts.push(`route ${line.trim()}`);
  }
  return conflicts;
}

export interface KubeProxyPorts {
  readonly healthz: number;
  readonly metrics: number;
}

export const kubeProxyPorts: KubeProxyPorts = { healthz: 10256, metrics: 10249 };

/** The name kube-proxy goes by: no Node of that name exists (it runs in the host's namespace, not on a node). */
export const kubeProxyHostname = 'keyvirt-host';

/**
 * kube-proxy's configuration (iptables mode) for the host's network namespace: node
 * address = the bridge gateway; every Service packet masqueraded (the host forwards
 * between namespaces on one bridge, so replies come back through it); NodePorts only on
 * the gateway, none on loopback (route_localnet stays 0); conntrack sysctls left alone.
 */
export function kubeProxyConfig(kubeconfig: string, ports: KubeProxyPorts = kubeProxyPorts): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig },
    mode: 'iptables',
    hostnameOverride: kubeProxyHostname,
    bindAddress: network.gateway,
    healthzBindAddress: `127.0.0.1:${ports.healthz}`,
    metricsBindAddress: `127.0.0.1:${ports.metrics}`,
    clusterCIDR: network.subnet,
    detectLocalMode: 'ClusterCIDR',
    nodePortAddresses: [`${network.gateway}/32`],
    oomScoreAdj: 0,
    iptables: { masqueradeAll: true, localhostNodePorts: false, syncPeriod: '30s', minSyncPeriod: '0s' },
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
  });
}

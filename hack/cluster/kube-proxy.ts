// kube-proxy of the local cluster (ADR 0099): one process in the host's network namespace,
// where the cluster bridge carries every node and pod namespace, in iptables mode, with
// its own client certificate (user system:kube-proxy, bound to system:node-proxier by the
// API server's default RBAC). Before it starts, the Service CIDR is routed onto the cluster
// bridge, so that a packet to a ClusterIP never leaves the machine, whether or not
// kube-proxy has rewritten it; the start fails when the host already uses part of that CIDR.
// The host forwards what arrives on the bridge back onto it, and nowhere else.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { daemonPid, readCmdline, startDaemon, stopDaemon } from './daemons.ts';
import { ip, linkExists } from './host-network.ts';
import { network, serviceClusterIpRange } from './layout.ts';
import type { ClusterLayout } from './layout.ts';
import { writeKubeconfig } from './pki.ts';
import { kubeProxyConfig, ServiceRangeConflictError, serviceRangeConflicts, serviceRouteArgs } from './service-network.ts';

const NAME = 'kube-proxy';

function configPrefix(layout: ClusterLayout): string {
  return path.join(layout.runDir, 'kube-proxy-');
}

/** Routes the Service CIDR onto the cluster bridge, after checking nothing on the host uses it. */
export function ensureServiceRoute(): void {
  if (!linkExists(network.bridge)) throw new ServiceRangeConflictError(`the cluster bridge ${network.bridge} is missing; start the control plane first`);
  const conflicts = serviceRangeConflicts(ip(['-4', '-o', 'addr', 'show']).split('\n'), ip(['-4', 'route', 'show', 'table', 'all']).split('\n'));
  if (conflicts.length > 0) {
    throw new ServiceRangeConflictError(
      `the Service CIDR ${serviceClusterIpRange} is in use on this host (${conflicts.join('; ')}): a ClusterIP could be a real address; refusing to route it`,
    );
  }
  ip(serviceRouteArgs());
}

/**
 * The one FORWARD rule of the local cluster: a packet received on the cluster bridge is
 * never routed out of another interface (nothing of a node or pod namespace leaves the
 * machine through the host). It sits in the mangle table, which the kernel walks before
 * the filter table's FORWARD chain, where kube-proxy puts its own rules first and accepts
 * every Service packet it marked, wherever its endpoint is.
 */
const BRIDGE_ONLY_FORWARD = ['-i', network.bridge, '!', '-o', network.bridge, '-m', 'comment', '--comment', 'keyvirt: the cluster bridge forwards only onto itself', '-j', 'DROP'];

function iptables(args: readonly string[]): void {
  execFileSync('iptables', ['-w', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function bridgeOnlyForwardInstalled(): boolean {
  try {
    iptables(['-t', 'mangle', '-C', 'FORWARD', ...BRIDGE_ONLY_FORWARD]);
    return true;
  } catch {
    return false;
  }
}

/**
 * The host routes between the cluster's namespaces: kube-proxy masquerades every Service
 * packet, so the endpoint's reply comes to the host, which reverses the NAT and must send
 * it on over the bridge to the client's namespace. A host whose `net.ipv4.ip_forward` is 0
 * dropped that reply, and a Service was reached from the host alone. Forwarding is turned
 * on for what arrives on the cluster bridge only, not host-wide, behind a rule that drops
 * whatever of it would leave through another interface.
 */
export function ensureBridgeForwarding(): void {
  if (!bridgeOnlyForwardInstalled()) iptables(['-t', 'mangle', '-I', 'FORWARD', '1', ...BRIDGE_ONLY_FORWARD]);
  fs.writeFileSync(`/proc/sys/net/ipv4/conf/${network.bridge}/forwarding`, '1');
}

/** Removes the bridge's FORWARD rule (its forwarding setting goes with the bridge). */
function removeBridgeForwarding(): void {
  while (bridgeOnlyForwardInstalled()) iptables(['-t', 'mangle', '-D', 'FORWARD', ...BRIDGE_ONLY_FORWARD]);
}

/** Builds kube-proxy when missing or stale (cached by hash) and returns its path. */
function buildKubeProxy(layout: ClusterLayout): string {
  return execFileSync('bash', [path.join(layout.root, 'hack/k8s/kube-proxy/build.sh')], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KEYVIRT_K8S_BIN: layout.binDir },
  }).trim();
}

/** Starts kube-proxy unless it runs with this configuration already; does not wait for its first sync. */
export async function kubeProxyUp(layout: ClusterLayout, log: Logger): Promise<void> {
  ensureServiceRoute();
  ensureBridgeForwarding();
  const command = buildKubeProxy(layout);
  const kubeconfig = path.join(layout.runDir, 'kube-proxy.kubeconfig');
  writeKubeconfig(layout.pkiDir, 'kube-proxy', kubeconfig);
  const config = kubeProxyConfig(kubeconfig);
  const configFile = `${configPrefix(layout)}${createHash('sha256').update(config).digest('hex').slice(0, 12)}.yaml`;
  // kube-proxy exits when its configuration file is written to, even with the same bytes:
  // the file is named by its content's hash and written only when it is new.
  if (!fs.existsSync(configFile)) fs.writeFileSync(configFile, config);
  const running = daemonPid(layout, NAME, configPrefix(layout));
  if (running !== undefined) {
    if (readCmdline(running)?.includes(configFile) === true) return;
    await stopDaemon(layout, NAME, configPrefix(layout));
    log.info({ component: NAME }, 'restarting with a new configuration');
  }
  const pid = startDaemon(layout, { name: NAME, command, marker: configPrefix(layout), args: [`--config=${configFile}`, '--v=1'] });
  log.info({ component: NAME, pid }, 'started');
}

/** Stops kube-proxy and removes its rules from the host's tables. */
export async function kubeProxyDown(layout: ClusterLayout, log: Logger): Promise<void> {
  removeBridgeForwarding();
  const stopped = await stopDaemon(layout, NAME, configPrefix(layout));
  if (stopped) log.info({ component: NAME }, 'stopped');
  const command = path.join(layout.binDir, NAME);
  if (!stopped || !fs.existsSync(command)) return;
  try {
    execFileSync(command, ['--cleanup'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
  } catch (err) {
    // --cleanup also tries the ipvs and nftables back-ends, which this host may lack.
    log.warn({ err }, 'kube-proxy --cleanup reported errors');
  }
}

// Pod sandboxes' networking: each pod gets its own network namespace with a veth
// whose peer sits on the node's bridge (nbr0, inside the node namespace, whose
// uplink joins the host bridge), an address from the node's slice of the /24 and a
// default route through the gateway. The simulator runs inside the node namespace.
import { deleteNetns, ip, listNetns, netnsExists } from '../cluster/host-network.ts';
import { network } from '../cluster/layout.ts';

export const nodeBridge = 'nbr0';

export function podNetnsName(nodeIndex: number, podUid: string): string {
  return `kvp-${nodeIndex}-${podUid.replaceAll('-', '').slice(0, 12)}`;
}

function hostVethName(podUid: string): string {
  return `vp${podUid.replaceAll('-', '').slice(0, 12)}`;
}

/**
 * The pod's MAC address, derived from its IP (`0a:58:` + the four address bytes, as
 * OVN-Kubernetes does). Pod IPs are reused as pods come and go; with a MAC tied to the
 * IP, neighbours' ARP caches stay right for a new pod at an old address instead of
 * sending its traffic to the deleted pod's MAC until the entry goes stale (~30–60 s).
 */
export function podMac(podIp: string): string {
  const bytes = podIp.split('.').map((b) => Number(b));
  if (bytes.length !== 4 || bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) throw new RangeError(`not an IPv4 address: ${podIp}`);
  return ['0a', '58', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Creates (or re-creates) the pod's namespace and wires it to the node bridge. */
export function createPodNetwork(netns: string, podUid: string, podIp: string): void {
  deleteNetns(netns);
  ip(['netns', 'add', netns]);
  const veth = hostVethName(podUid);
  try {
    ip(['link', 'del', veth]);
  } catch {
    // not present: the usual case
  }
  ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  ip(['link', 'set', veth, 'master', nodeBridge, 'up']);
  ip(['-n', netns, 'link', 'set', 'lo', 'up']);
  ip(['-n', netns, 'link', 'set', 'eth0', 'address', podMac(podIp)]);
  ip(['-n', netns, 'addr', 'add', `${podIp}/${network.prefixLength}`, 'dev', 'eth0']);
  ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
  ip(['-n', netns, 'route', 'add', 'default', 'via', network.gateway]);
}

export function deletePodNetwork(netns: string): void {
  if (netnsExists(netns)) deleteNetns(netns);
}

/** Removes pod namespaces left behind by an earlier run of this node. */
export function deleteStalePodNetworks(nodeIndex: number, keep: ReadonlySet<string>): void {
  for (const netns of listNetns(`kvp-${nodeIndex}-`)) {
    if (!keep.has(netns)) deleteNetns(netns);
  }
}

// What the node agent does inside a launcher pod's network namespace (ADR 0094): a pure
// function of the VM's pod-network interface (binding, ports) and the pod interface's
// state as the CNI left it. Every value in a command is a validated address, an integer
// or one of this module's constants; nothing a VM author writes reaches a command but
// port numbers and protocols the CRD bounds.
//
// masquerade: bridge kvbr0 (10.0.2.1/24) + tap kvtap0; the guest at 10.0.2.2 by DHCP;
//   DNAT of the listed ports (all ports but the launcher's when none are listed) from
//   eth0 to the guest; outbound masqueraded behind the pod IP.
// bridge: the pod IP moves to the guest. eth0 keeps its MAC but no address; the pod IP
//   is routed to the bridge, proxy ARP answers for it on eth0 and for the pod's subnet
//   on the bridge; the launcher keeps its API on 169.254.75.10 behind a DNAT of its own
//   ports, so the guest never sees the launcher's traffic.
// Both: the guest may reach the launcher only for DHCP; the pod's own interface may not
// reach the DHCP server; the launcher's ephemeral ports are a fixed reserved range.
import {
  BRIDGE_LAUNCHER_ADDRESS, encodeGuestLease, LAUNCHER_API_PORT, LAUNCHER_EPHEMERAL_PORTS, MASQUERADE_GATEWAY, MASQUERADE_GUEST,
  MASQUERADE_PREFIX_LENGTH, POD_INTERFACE, POD_NETWORK_BRIDGE, POD_NETWORK_TAP,
} from '@keyvirt/launcher/api';
import type { GuestLease } from '@keyvirt/launcher/api';

export class PodNetworkPlanError extends Error {
  override name = 'PodNetworkPlanError';
}

export interface PodInterfaceState {
  /** The pod IP on eth0. */
  address: string;
  prefixLength: number;
  mtu: number;
  /** The default route's gateway, when there is one. */
  gateway?: string | undefined;
}

export interface ForwardedPort {
  port: number;
  protocol: 'TCP' | 'UDP';
}

export interface PodNetworkPlanInput {
  binding: 'masquerade' | 'bridge';
  /** masquerade: the ports to forward; undefined = every port but the launcher's. */
  ports?: readonly ForwardedPort[] | undefined;
  pod: PodInterfaceState;
  /** The uid the launcher (QEMU) runs as: the owner of the tap. */
  launcherUid: number;
}

export interface PodNetworkPlan {
  /** `ip`/`sysctl` argv lists, run in order inside the pod's network namespace. */
  commands: string[][];
  /** iptables-restore input (`--noflush`: only KeyVirt's own chains are written). */
  iptables: string;
  /** Run last, after the rules: writes the lease on the tap, which tells the launcher all is ready. */
  announce: string[];
  lease: GuestLease;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function checkState(pod: PodInterfaceState): void {
  if (!IPV4.test(pod.address)) throw new PodNetworkPlanError(`pod address ${pod.address} is not an IPv4 address`);
  if (pod.gateway !== undefined && !IPV4.test(pod.gateway)) throw new PodNetworkPlanError(`pod gateway ${pod.gateway} is not an IPv4 address`);
  if (!Number.isInteger(pod.prefixLength) || pod.prefixLength < 1 || pod.prefixLength > 32) throw new PodNetworkPlanError(`pod prefix length ${pod.prefixLength} is out of range`);
  if (!Number.isInteger(pod.mtu) || pod.mtu < 576 || pod.mtu > 65_535) throw new PodNetworkPlanError(`pod MTU ${pod.mtu} is out of range`);
}

/** True for a port the launcher keeps for itself (its API, its ephemeral range). */
export function isLauncherPort(port: number): boolean {
  return port === LAUNCHER_API_PORT || (port >= LAUNCHER_EPHEMERAL_PORTS.first && port <= LAUNCHER_EPHEMERAL_PORTS.last);
}

function networkOf(address: string, prefixLength: number): string {
  const n = address.split('.').reduce((acc, b) => (acc << 8) + Number(b), 0) >>> 0;
  const mask = (0xffffffff << (32 - prefixLength)) >>> 0;
  const net = (n & mask) >>> 0;
  return [24, 16, 8, 0].map((s) => (net >>> s) & 0xff).join('.');
}

const EPHEMERAL = `${LAUNCHER_EPHEMERAL_PORTS.first}:${LAUNCHER_EPHEMERAL_PORTS.last}`;

/** Commands common to both bindings: bridge, tap, sysctls. */
function announce(lease: GuestLease): string[] {
  return ['ip', 'link', 'set', 'dev', POD_NETWORK_TAP, 'alias', encodeGuestLease(lease)];
}

function bridgeAndTap(input: PodNetworkPlanInput, bridgeAddress: string): string[][] {
  return [
    ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'],
    ['sysctl', '-q', '-w', 'net.ipv4.ip_unprivileged_port_start=67'],
    ['sysctl', '-q', '-w', `net.ipv4.ip_local_port_range=${LAUNCHER_EPHEMERAL_PORTS.first} ${LAUNCHER_EPHEMERAL_PORTS.last}`],
    ['ip', 'link', 'add', POD_NETWORK_BRIDGE, 'mtu', String(input.pod.mtu), 'type', 'bridge'],
    ['ip', 'addr', 'add', bridgeAddress, 'dev', POD_NETWORK_BRIDGE],
    ['ip', 'tuntap', 'add', 'dev', POD_NETWORK_TAP, 'mode', 'tap', 'user', String(input.launcherUid)],
    ['ip', 'link', 'set', 'dev', POD_NETWORK_TAP, 'mtu', String(input.pod.mtu), 'master', POD_NETWORK_BRIDGE, 'up'],
    ['ip', 'link', 'set', 'dev', POD_NETWORK_BRIDGE, 'up'],
  ];
}

function filterRules(): string[] {
  return [
    '*filter',
    ':KEYVIRT-INPUT - [0:0]',
    '-A INPUT -j KEYVIRT-INPUT',
    `-A KEYVIRT-INPUT -i ${POD_INTERFACE} -p udp --dport 67 -j DROP`,
    `-A KEYVIRT-INPUT -i ${POD_NETWORK_BRIDGE} -p udp --dport 67 -j ACCEPT`,
    `-A KEYVIRT-INPUT -i ${POD_NETWORK_BRIDGE} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
    `-A KEYVIRT-INPUT -i ${POD_NETWORK_BRIDGE} -j DROP`,
    'COMMIT',
  ];
}

function masqueradeDnat(ports: readonly ForwardedPort[] | undefined): string[] {
  const chain = '-A KEYVIRT-PREROUTING';
  if (ports === undefined) {
    return [
      `${chain} -i ${POD_INTERFACE} -p tcp --dport ${LAUNCHER_API_PORT} -j RETURN`,
      `${chain} -i ${POD_INTERFACE} -p tcp --dport ${EPHEMERAL} -j RETURN`,
      `${chain} -i ${POD_INTERFACE} -p udp --dport ${EPHEMERAL} -j RETURN`,
      `${chain} -i ${POD_INTERFACE} -j DNAT --to-destination ${MASQUERADE_GUEST}`,
    ];
  }
  return ports.map((p) => {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65_535) throw new PodNetworkPlanError(`port ${p.port} is out of range`);
    if (isLauncherPort(p.port)) throw new PodNetworkPlanError(`port ${p.port} is the launcher's own`);
    const proto = p.protocol === 'UDP' ? 'udp' : 'tcp';
    return `${chain} -i ${POD_INTERFACE} -p ${proto} --dport ${p.port} -j DNAT --to-destination ${MASQUERADE_GUEST}:${p.port}`;
  });
}

function masquerade(input: PodNetworkPlanInput): PodNetworkPlan {
  const lease: GuestLease = {
    v: 1, binding: 'masquerade', address: MASQUERADE_GUEST, prefixLength: MASQUERADE_PREFIX_LENGTH, gateway: MASQUERADE_GATEWAY,
    server: MASQUERADE_GATEWAY, mtu: input.pod.mtu,
  };
  const iptables = [
    '*nat',
    ':KEYVIRT-PREROUTING - [0:0]',
    ':KEYVIRT-POSTROUTING - [0:0]',
    '-A PREROUTING -j KEYVIRT-PREROUTING',
    '-A POSTROUTING -j KEYVIRT-POSTROUTING',
    ...masqueradeDnat(input.ports),
    `-A KEYVIRT-POSTROUTING -s ${MASQUERADE_GUEST}/32 -o ${POD_INTERFACE} -j MASQUERADE`,
    'COMMIT',
    ...filterRules(),
    '',
  ].join('\n');
  return {
    commands: bridgeAndTap(input, `${MASQUERADE_GATEWAY}/${MASQUERADE_PREFIX_LENGTH}`),
    iptables,
    announce: announce(lease),
    lease,
  };
}

function bridge(input: PodNetworkPlanInput): PodNetworkPlan {
  const { pod } = input;
  if (input.ports !== undefined) throw new PodNetworkPlanError('ports can only be set on a masquerade interface');
  const lease: GuestLease = {
    v: 1, binding: 'bridge', address: pod.address, prefixLength: pod.prefixLength, gateway: pod.gateway,
    server: BRIDGE_LAUNCHER_ADDRESS, mtu: pod.mtu,
  };
  const subnet = `${networkOf(pod.address, pod.prefixLength)}/${pod.prefixLength}`;
  const launcher = BRIDGE_LAUNCHER_ADDRESS;
  const iptables = [
    '*nat',
    ':KEYVIRT-PREROUTING - [0:0]',
    ':KEYVIRT-POSTROUTING - [0:0]',
    '-A PREROUTING -j KEYVIRT-PREROUTING',
    '-A POSTROUTING -j KEYVIRT-POSTROUTING',
    // The launcher's own ports stay the launcher's: to its private address.
    `-A KEYVIRT-PREROUTING -i ${POD_INTERFACE} -d ${pod.address}/32 -p tcp --dport ${LAUNCHER_API_PORT} -j DNAT --to-destination ${launcher}`,
    `-A KEYVIRT-PREROUTING -i ${POD_INTERFACE} -d ${pod.address}/32 -p tcp --dport ${EPHEMERAL} -j DNAT --to-destination ${launcher}`,
    `-A KEYVIRT-PREROUTING -i ${POD_INTERFACE} -d ${pod.address}/32 -p udp --dport ${EPHEMERAL} -j DNAT --to-destination ${launcher}`,
    // What the launcher itself sends leaves from the pod IP.
    `-A KEYVIRT-POSTROUTING -s ${launcher}/32 -o ${POD_INTERFACE} -j SNAT --to-source ${pod.address}`,
    'COMMIT',
    ...filterRules(),
    '',
  ].join('\n');
  const onLink = pod.gateway === undefined ? [] : [['ip', 'route', 'replace', `${pod.gateway}/32`, 'dev', POD_INTERFACE]];
  const viaGateway = pod.gateway === undefined ? [] : [['ip', 'route', 'replace', 'default', 'via', pod.gateway, 'dev', POD_INTERFACE, 'onlink']];
  return {
    commands: [
      ...bridgeAndTap(input, `${launcher}/32`),
      // The pod IP leaves eth0 (its routes with it) and is routed to the guest.
      ['ip', 'addr', 'flush', 'dev', POD_INTERFACE],
      ['sysctl', '-q', '-w', `net.ipv4.conf.${POD_INTERFACE}.proxy_arp=1`],
      ['sysctl', '-q', '-w', `net.ipv4.conf.${POD_NETWORK_BRIDGE}.proxy_arp=1`],
      ['ip', 'route', 'replace', `${pod.address}/32`, 'dev', POD_NETWORK_BRIDGE, 'src', launcher],
      ...onLink,
      ['ip', 'route', 'replace', subnet, 'dev', POD_INTERFACE, 'src', launcher],
      ...viaGateway,
    ],
    iptables,
    announce: announce(lease),
    lease,
  };
}

/** The set-up of one launcher pod's namespace for its pod-network interface. */
export function planPodNetwork(input: PodNetworkPlanInput): PodNetworkPlan {
  checkState(input.pod);
  if (!Number.isInteger(input.launcherUid) || input.launcherUid < 0) throw new PodNetworkPlanError(`launcher uid ${input.launcherUid} is not a uid`);
  return input.binding === 'masquerade' ? masquerade(input) : bridge(input);
}

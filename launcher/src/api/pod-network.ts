// The contract between the node agent, which prepares a launcher pod's network
// namespace (ADR 0094), and the launcher, which only uses what was prepared: the names
// of the tap and bridge, the launcher's reserved ports, and the guest's lease the node
// agent writes as the tap's alias (IFLA_IFALIAS, at most 255 bytes) for the launcher's
// DHCP server to hand out. The launcher reads the alias with an unprivileged netlink
// dump; nothing else crosses from the node side to the launcher.
import { z } from 'zod';

/** The bridge in the pod's namespace; it carries the launcher's own address on the guest side. */
export const POD_NETWORK_BRIDGE = 'kvbr0';
/** The tap QEMU opens (persistent, owned by the launcher's uid). */
export const POD_NETWORK_TAP = 'kvtap0';
/** The pod's interface (the CNI's). */
export const POD_INTERFACE = 'eth0';
/** The launcher API's port: never forwarded to the guest. */
export const LAUNCHER_API_PORT = 8443;
/**
 * The launcher's ephemeral ports (a migration target's incoming port among them): the
 * node agent sets the pod's `net.ipv4.ip_local_port_range` to this range and never
 * forwards it to the guest.
 */
export const LAUNCHER_EPHEMERAL_PORTS = { first: 49152, last: 49215 } as const;

/** masquerade: the guest behind NAT at 10.0.2.2/24, the launcher at 10.0.2.1 (KubeVirt's addresses). */
export const MASQUERADE_GATEWAY = '10.0.2.1';
export const MASQUERADE_GUEST = '10.0.2.2';
export const MASQUERADE_PREFIX_LENGTH = 24;
/** bridge: the launcher's private address on the guest side (KubeVirt's), the pod IP being the guest's. */
export const BRIDGE_LAUNCHER_ADDRESS = '169.254.75.10';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
export const Ipv4Address = z.string().regex(IPV4, { error: 'must be an IPv4 address' });

export const GuestLeaseSchema = z
  .object({
    v: z.literal(1),
    binding: z.enum(['masquerade', 'bridge']),
    address: Ipv4Address.describe('The guest\'s address'),
    prefixLength: z.int().min(1).max(32),
    gateway: Ipv4Address.optional().describe('The guest\'s default gateway'),
    server: Ipv4Address.describe('The DHCP server\'s (the launcher\'s) address on the bridge'),
    mtu: z.int().min(576).max(65_535),
  })
  .strict();
export type GuestLease = z.infer<typeof GuestLeaseSchema>;

/** The alias text of the tap (JSON, under the 255-byte IFALIAS limit). */
export function encodeGuestLease(lease: GuestLease): string {
  const text = JSON.stringify(GuestLeaseSchema.parse(lease));
  if (Buffer.byteLength(text) > 255) throw new RangeError('the guest lease does not fit an interface alias');
  return text;
}

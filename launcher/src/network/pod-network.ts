// The launcher's side of the pod network (ADR 0094): the node agent prepares the tap,
// bridge, NAT and sysctls in the pod's namespace and writes the guest's lease as the
// tap's alias; the launcher, without capabilities, waits for that tap, reads the lease
// (an unprivileged netlink dump through iproute2), and serves it to the guest by DHCP.
// QEMU then opens the tap by name (it is owned by the launcher's uid).
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { GuestLeaseSchema, Ipv4Address, POD_NETWORK_TAP } from '../api/pod-network.ts';
import type { GuestLease } from '../api/pod-network.ts';
import type { LauncherConfig } from '../api/config.ts';
import { DhcpServer } from './dhcp-server.ts';
import type { GuestOffer } from './dhcp-reply.ts';
import { hostIp } from './tap.ts';
import type { IpRunner } from './tap.ts';

export class PodNetworkError extends Error {
  override name = 'PodNetworkError';
}

/** QEMU's own default MAC for the first NIC; the guest behind NAT is alone on its bridge. */
export const QEMU_DEFAULT_MAC = '52:54:00:12:34:56';

const LinkDump = z.array(z.object({ ifname: z.string(), ifalias: z.string().optional(), flags: z.array(z.string()).default([]) }));

/** The lease the node agent left on `tap`, or undefined while the tap or its alias is not there. */
export async function readGuestLease(tap: string, ip: IpRunner = hostIp): Promise<GuestLease | undefined> {
  const out = await ip(['-j', 'link', 'show', 'dev', tap]).catch(() => undefined);
  if (out === undefined) return undefined;
  const link = LinkDump.parse(JSON.parse(out))[0];
  if (link?.ifalias === undefined || link.ifalias === '') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(link.ifalias);
  } catch (err) {
    throw new PodNetworkError(`the alias of ${tap} is not a guest lease`, { cause: err });
  }
  const parsed = GuestLeaseSchema.safeParse(json);
  if (!parsed.success) throw new PodNetworkError(`the alias of ${tap} is not a guest lease: ${parsed.error.message}`);
  return parsed.data;
}

/** Waits until the node agent has prepared the tap (polling every `intervalMs`). */
export async function awaitGuestLease(options: { tap?: string; timeoutMs: number; intervalMs?: number; ip?: IpRunner; signal?: AbortSignal }): Promise<GuestLease> {
  const tap = options.tap ?? POD_NETWORK_TAP;
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const lease = await readGuestLease(tap, options.ip);
    if (lease !== undefined) return lease;
    if (Date.now() > deadline) throw new PodNetworkError(`the node agent did not prepare ${tap} within ${Math.round(options.timeoutMs / 1000)} s`);
    await sleep(options.intervalMs ?? 250, undefined, { signal: options.signal });
  }
}

/** The pod's resolver (kubelet-written /etc/resolv.conf): IPv4 name servers and search domains. */
export function parseResolvConf(text: string): { dns: string[]; searchDomains: string[] } {
  const dns: string[] = [];
  const searchDomains: string[] = [];
  for (const line of text.split('\n')) {
    const [key, ...values] = line.trim().split(/\s+/);
    if (key === 'nameserver' && values[0] !== undefined && Ipv4Address.safeParse(values[0]).success) dns.push(values[0]);
    if (key === 'search') searchDomains.push(...values.filter((v) => /^[A-Za-z0-9.-]{1,253}$/.test(v)));
  }
  return { dns, searchDomains };
}

export interface PodNetwork {
  readonly lease: GuestLease;
  readonly mac: string;
  readonly dhcp: DhcpServer;
  close(): Promise<void>;
}

/** Waits for the prepared tap and starts the DHCP server for the guest NIC `mac`. */
export async function startPodNetwork(options: { mac: string | undefined; logger: Logger; timeoutMs: number; resolvConf?: string; ip?: IpRunner; signal?: AbortSignal }): Promise<PodNetwork> {
  const lease = await awaitGuestLease({ timeoutMs: options.timeoutMs, ...(options.ip === undefined ? {} : { ip: options.ip }), ...(options.signal === undefined ? {} : { signal: options.signal }) });
  const mac = (options.mac ?? QEMU_DEFAULT_MAC).toLowerCase();
  const resolver = parseResolvConf(await readFile(options.resolvConf ?? '/etc/resolv.conf', 'utf8').catch(() => ''));
  // A masqueraded guest reaches the pod's resolvers through the NAT; a bridged one directly.
  const offer: GuestOffer = { lease, mac, ...resolver };
  const dhcp = new DhcpServer({ offer, logger: options.logger });
  await dhcp.start();
  options.logger.info({ binding: lease.binding, guest: lease.address, gateway: lease.gateway }, 'pod network ready');
  return { lease, mac, dhcp, close: () => dhcp.close() };
}

/** How long a launcher waits for the node agent before it gives up on starting the VM. */
export const POD_NETWORK_TIMEOUT_MS = 120_000;

/** Starts the pod network of the configuration's node-prepared interface, if it has one. */
export async function startConfiguredPodNetwork(config: LauncherConfig, logger: Logger, signal?: AbortSignal): Promise<PodNetwork | undefined> {
  const iface = config.template.interfaces.find((i) => config.interfaces[i.name]?.podNetwork === true);
  if (iface === undefined) return undefined;
  const log = logger.child({ component: 'pod-network', interface: iface.name });
  log.info({ tap: POD_NETWORK_TAP }, 'waiting for the node agent to prepare the pod network');
  return startPodNetwork({ mac: iface.macAddress, logger: log, timeoutMs: POD_NETWORK_TIMEOUT_MS, ...(signal === undefined ? {} : { signal }) });
}

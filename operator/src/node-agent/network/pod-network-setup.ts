// Applies a pod-network plan inside a launcher pod's network namespace: each command
// through `nsenter --net=<ns>` (the agent needs CAP_SYS_ADMIN to enter the namespace and
// CAP_NET_ADMIN in it), the rules through iptables-restore --noflush, the lease last.
// Idempotent: a namespace whose tap already carries a lease is left as it is; one left
// half-prepared (an agent killed mid-way) is refused, never re-planned from a state the
// agent itself changed.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { POD_INTERFACE, POD_NETWORK_BRIDGE, POD_NETWORK_TAP } from '@keyvirt/launcher/api';
import type { GuestLease } from '@keyvirt/launcher/api';
import { z } from 'zod';
import { planPodNetwork } from './pod-network-plan.ts';
import type { ForwardedPort, PodInterfaceState } from './pod-network-plan.ts';

const execFileAsync = promisify(execFile);

export class PodNetworkSetupError extends Error {
  override name = 'PodNetworkSetupError';
}

/** Runs argv inside the namespace; stdin optional. Injected so tests can use `ip netns exec`. */
export type NetnsRunner = (argv: readonly string[], stdin?: string) => Promise<string>;

export function nsenterRunner(netnsPath: string): NetnsRunner {
  return async (argv, stdin) => {
    const child = execFileAsync('nsenter', [`--net=${netnsPath}`, '--', ...argv], { timeout: 30_000 });
    if (stdin !== undefined) child.child.stdin?.end(stdin);
    return (await child).stdout;
  };
}

const AddrDump = z.array(z.object({
  ifname: z.string(),
  mtu: z.int(),
  address: z.string().optional(),
  addr_info: z.array(z.object({ family: z.string(), local: z.string(), prefixlen: z.int() })).default([]),
}));
const RouteDump = z.array(z.object({ dst: z.string(), gateway: z.string().optional(), dev: z.string().optional() }));
const LinkDump = z.array(z.object({ ifname: z.string(), ifalias: z.string().optional() }));

/** eth0's address, prefix, MTU and the default gateway, as the CNI left them. */
export async function readPodInterface(run: NetnsRunner): Promise<PodInterfaceState> {
  const [link] = AddrDump.parse(JSON.parse(await run(['ip', '-j', 'addr', 'show', 'dev', POD_INTERFACE])));
  const v4 = link?.addr_info.find((a) => a.family === 'inet');
  if (link === undefined || v4 === undefined) throw new PodNetworkSetupError(`${POD_INTERFACE} has no IPv4 address`);
  const routes = RouteDump.parse(JSON.parse(await run(['ip', '-j', '-4', 'route', 'show', 'default'])));
  const gateway = routes.find((r) => r.dev === POD_INTERFACE)?.gateway;
  return { address: v4.local, prefixLength: v4.prefixlen, mtu: link.mtu, ...(gateway === undefined ? {} : { gateway }) };
}

async function linkAlias(run: NetnsRunner, name: string): Promise<string | undefined | null> {
  const out = await run(['ip', '-j', 'link', 'show', 'dev', name]).catch(() => undefined);
  if (out === undefined) return null;
  return LinkDump.parse(JSON.parse(out))[0]?.ifalias;
}

export interface SetupRequest {
  binding: 'masquerade' | 'bridge';
  ports?: readonly ForwardedPort[] | undefined;
  launcherUid: number;
}

export type SetupOutcome = { result: 'prepared' | 'already-prepared'; lease?: GuestLease };

/** Prepares the namespace once. */
export async function setUpPodNetwork(run: NetnsRunner, request: SetupRequest): Promise<SetupOutcome> {
  const alias = await linkAlias(run, POD_NETWORK_TAP);
  if (typeof alias === 'string' && alias !== '') return { result: 'already-prepared' };
  if (alias !== null || (await linkAlias(run, POD_NETWORK_BRIDGE)) !== null) {
    throw new PodNetworkSetupError('the pod network is half prepared (an earlier set-up was cut short): the launcher pod must be replaced');
  }
  const pod = await readPodInterface(run);
  const plan = planPodNetwork({ binding: request.binding, ports: request.ports, pod, launcherUid: request.launcherUid });
  try {
    for (const argv of plan.commands) await run(argv);
    await run(['iptables-nft-restore', '--noflush'], plan.iptables);
    await run(plan.announce);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new PodNetworkSetupError(`pod network set-up failed: ${stderr.trim() || (err as Error).message}`, { cause: err });
  }
  return { result: 'prepared', lease: plan.lease };
}

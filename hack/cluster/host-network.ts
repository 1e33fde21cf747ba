// The host side of the node network: the bridge that carries the gateway (and the
// API server's address), plus helpers to run `ip` and to remove named namespaces.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { network } from './layout.ts';

export class HostNetworkError extends Error {
  override readonly name = 'HostNetworkError';
}

/** Runs `ip` with the given arguments; throws with ip's own message on failure. */
export function ip(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new HostNetworkError(`ip ${args.join(' ')}: ${typeof stderr === 'string' ? stderr.trim() : String(err)}`);
  }
}

export function linkExists(name: string): boolean {
  return fs.existsSync(`/sys/class/net/${name}`);
}

export function netnsExists(name: string): boolean {
  return fs.existsSync(`/run/netns/${name}`);
}

/** The cluster bridge's own MAC address, set once so that it never changes (see pinBridgeAddress). */
export const CLUSTER_BRIDGE_MAC = '02:6b:76:00:00:01';

/**
 * Gives a bridge a fixed MAC address (`args` prefixes the `ip` call, e.g. `-n <netns>`).
 * A bridge whose address was never set takes the lowest MAC among its ports, so a port
 * joining or leaving (a node or pod coming or going) changes it; every neighbour then
 * holds a stale entry for the bridge's IP address and its frames are dropped until the
 * entry is probed again, tens of seconds in which nodes could not reach the API server.
 */
export function pinBridgeAddress(bridge: string, mac: string, args: readonly string[] = []): void {
  const shown = ip([...args, '-o', 'link', 'show', 'dev', bridge]);
  if (!shown.includes(`link/ether ${mac} `)) ip([...args, 'link', 'set', 'dev', bridge, 'address', mac]);
}

/** Creates the bridge with the gateway address (idempotent). */
export function ensureBridge(): void {
  if (!linkExists(network.bridge)) {
    ip(['link', 'add', network.bridge, 'type', 'bridge']);
  }
  pinBridgeAddress(network.bridge, CLUSTER_BRIDGE_MAC);
  const addrs = ip(['-4', '-o', 'addr', 'show', 'dev', network.bridge]);
  if (!addrs.includes(`${network.gateway}/`)) {
    ip(['addr', 'add', `${network.gateway}/${network.prefixLength}`, 'dev', network.bridge]);
  }
  ip(['link', 'set', network.bridge, 'up']);
}

export function deleteBridge(): void {
  if (linkExists(network.bridge)) ip(['link', 'del', network.bridge]);
}

export function deleteNetns(name: string): void {
  if (netnsExists(name)) ip(['netns', 'del', name]);
}

/** Network namespaces whose name starts with `prefix`. */
export function listNetns(prefix: string): string[] {
  try {
    return fs.readdirSync('/run/netns').filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}

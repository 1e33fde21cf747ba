// Keeps the node's device plugins registered with the kubelet. Every tick: wait for the
// kubelet's kubelet.sock; serve and Register each device whose node exists on the host
// (a device absent at first is picked up once it appears); re-probe the health of each;
// and start over when the kubelet restarts — its kubelet.sock is a new file (other inode
// or change time) or the plugin's own socket was removed (a starting kubelet empties the
// directory) — so that a plugin is registered again within a tick of a kubelet restart.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { DEVICE_KINDS, type DeviceKind, type DeviceNodeState } from './devices.ts';
import { PLUGIN_OPTIONS, PluginServer } from './plugin-server.ts';
import { callUnary, DEVICE_PLUGIN_API_VERSION, Empty, KUBELET_SOCKET, method, registrationService, unixTarget, type RegisterRequest } from './protocol.ts';

export interface DevicePluginsOptions {
  /** The kubelet's device-plugins directory (kubelet.sock and the plugins' sockets). */
  readonly pluginDir: string;
  /** The agent's view of the host's /dev. */
  readonly devRoot: string;
  /** Shareable units advertised per device. */
  readonly units: number;
  readonly log: Logger;
  /** How often kubelet.sock, the sockets and the device nodes are looked at. */
  readonly tickMs?: number | undefined;
  /** The devices to offer; all of DEVICE_KINDS by default. */
  readonly kinds?: readonly DeviceKind[] | undefined;
}

const REGISTER_TIMEOUT_MS = 5000;

/** What a device node is on the host. */
export async function probeDeviceNode(file: string): Promise<DeviceNodeState> {
  try {
    return (await stat(file)).isCharacterDevice() ? 'character-device' : 'not-a-character-device';
  } catch {
    return 'missing';
  }
}

/** Identity of a file: changes when it is created anew. */
async function fileIdentity(file: string): Promise<string | undefined> {
  try {
    const s = await stat(file, { bigint: true });
    return `${s.dev}:${s.ino}:${s.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** Calls the kubelet's Register for one plugin. */
export async function registerWithKubelet(kubeletSocket: string, request: RegisterRequest): Promise<void> {
  const client = new grpc.Client(unixTarget(kubeletSocket), grpc.credentials.createInsecure());
  try {
    await callUnary(client, method(registrationService, 'Register'), request, Empty, REGISTER_TIMEOUT_MS);
  } finally {
    client.close();
  }
}

interface Served {
  readonly server: PluginServer;
  readonly socket: string;
}

/** Serves and registers the node's device plugins until `signal` aborts. */
export async function runDevicePlugins(options: DevicePluginsOptions, signal: AbortSignal): Promise<void> {
  const { pluginDir, devRoot, units, log } = options;
  const tickMs = options.tickMs ?? 1000;
  const kinds = options.kinds ?? DEVICE_KINDS;
  const kubeletSocket = path.join(pluginDir, KUBELET_SOCKET);
  const served = new Map<string, Served>();
  let kubelet: string | undefined;
  const stopAll = async (): Promise<void> => {
    await Promise.all([...served.values()].map((s) => s.server.stop()));
    served.clear();
  };
  log.info({ pluginDir, resources: kinds.map((k) => k.resource), units }, 'device plugins starting');
  try {
    while (!signal.aborted) {
      const identity = await fileIdentity(kubeletSocket);
      if (identity !== kubelet) {
        if (served.size > 0) log.info({ kubeletSocket }, 'kubelet socket changed; registering again');
        await stopAll();
        kubelet = identity;
      }
      if (identity !== undefined) {
        for (const kind of kinds) await keepServed(kind, served, { kubeletSocket, pluginDir, devRoot, units, log });
      }
      await sleep(tickMs, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    await stopAll();
    log.info('device plugins stopped');
  }
}

interface ServeContext {
  readonly kubeletSocket: string;
  readonly pluginDir: string;
  readonly devRoot: string;
  readonly units: number;
  readonly log: Logger;
}

/** One tick for one device: re-probe a served plugin (restart it if its socket is gone), or serve and register a present one. */
async function keepServed(kind: DeviceKind, served: Map<string, Served>, ctx: ServeContext): Promise<void> {
  const current = served.get(kind.resource);
  if (current !== undefined) {
    if ((await fileIdentity(current.socket)) !== undefined) {
      await current.server.refresh();
      return;
    }
    ctx.log.info({ resource: kind.resource }, 'plugin socket removed; registering again');
    await current.server.stop();
    served.delete(kind.resource);
  }
  const probe = (): Promise<DeviceNodeState> => probeDeviceNode(path.join(ctx.devRoot, kind.devName));
  if ((await probe()) !== 'character-device') return;
  const socket = path.join(ctx.pluginDir, kind.endpoint);
  const server = new PluginServer({ kind, units: ctx.units, socketPath: socket, probe, log: ctx.log });
  try {
    await server.start();
    await registerWithKubelet(ctx.kubeletSocket, {
      version: DEVICE_PLUGIN_API_VERSION,
      endpoint: kind.endpoint,
      resource_name: kind.resource,
      options: PLUGIN_OPTIONS,
    });
    served.set(kind.resource, { server, socket });
    ctx.log.info({ resource: kind.resource, endpoint: kind.endpoint, units: ctx.units }, 'registered with the kubelet');
  } catch (err) {
    ctx.log.warn({ err, resource: kind.resource }, 'device plugin registration failed; trying again');
    await server.stop();
  }
}

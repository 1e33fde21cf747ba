// The kubelet's device manager, for a simulated node: the Registration service on
// <dir>/kubelet.sock (the directory emptied first, as a starting kubelet does), a client
// per registered plugin that follows its ListAndWatch stream, the node's capacity (every
// unit a plugin listed) and allocatable (its Healthy units) per resource, and Allocate
// when a pod's container asks for a registered resource. Every message from a socket is
// parsed. As in the kubelet: a plugin that goes away leaves its capacity and no
// allocatable; a resource no plugin ever registered is not the device manager's (a
// container asking for it gets nothing from here); a second registration of a resource
// replaces the first.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AllocateResponse,
  callUnary,
  DEVICE_PLUGIN_API_VERSION,
  devicePluginService,
  DevicePluginOptions,
  HEALTHY,
  KUBELET_SOCKET,
  ListAndWatchResponse,
  method,
  RegisterRequest,
  registrationService,
  statusError,
  unixTarget,
  type ContainerAllocateResponse,
} from '../../operator/src/node-agent/device-plugin/protocol.ts';

/** What a container gets from the plugins it was allocated from. */
export interface ContainerDevices {
  readonly devices: readonly { readonly hostPath: string; readonly containerPath: string; readonly permissions: string }[];
  readonly mounts: readonly { readonly hostPath: string; readonly containerPath: string; readonly readOnly: boolean }[];
  readonly envs: Readonly<Record<string, string>>;
}

export const NO_DEVICES: ContainerDevices = { devices: [], mounts: [], envs: {} };

/** The resource is registered but has too few Healthy, free units now (the caller waits). */
export class DevicesNotReadyError extends Error {
  override readonly name = 'DevicesNotReadyError';
}

/** The plugin refused or failed the allocation, or answered nonsense. */
export class DeviceAllocationError extends Error {
  override readonly name = 'DeviceAllocationError';
}

// An extended resource name: a domain outside kubernetes.io, a slash, a name.
const RESOURCE_NAME = /^(?!(?:[^/]*\.)?kubernetes\.io\/)[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const ENDPOINT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const ALLOCATE_TIMEOUT_MS = 10_000;

/** Why a registration is refused, or undefined when it is acceptable. */
export function registrationProblem(request: RegisterRequest): string | undefined {
  if (request.version !== DEVICE_PLUGIN_API_VERSION) return `device plugin API version ${request.version} is not supported (${DEVICE_PLUGIN_API_VERSION} is)`;
  if (!RESOURCE_NAME.test(request.resource_name)) return `resource name ${request.resource_name} is not an extended resource name`;
  if (!ENDPOINT.test(request.endpoint) || request.endpoint === KUBELET_SOCKET) return `endpoint ${request.endpoint} is not a socket file name in the device-plugins directory`;
  return undefined;
}

interface Endpoint {
  readonly client: grpc.Client;
  readonly stream: grpc.ClientReadableStream<object>;
}

interface Resource {
  /** Unit ID → Healthy. */
  units: Map<string, boolean>;
  endpoint: Endpoint | undefined;
  /** Pod UID → the units it holds. */
  readonly held: Map<string, readonly string[]>;
}

export interface DeviceManagerOptions {
  readonly dir: string;
  readonly log: Logger;
  /** Called whenever capacity or allocatable may have changed. */
  readonly onChange: () => void;
}

export class DeviceManager {
  readonly #opts: DeviceManagerOptions;
  readonly #log: Logger;
  readonly #resources = new Map<string, Resource>();
  #server: grpc.Server | undefined;

  constructor(opts: DeviceManagerOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'device-manager' });
  }

  get socketPath(): string {
    return path.join(this.#opts.dir, KUBELET_SOCKET);
  }

  /** Empties the directory (stale plugin sockets) and serves Registration on kubelet.sock. */
  async start(): Promise<void> {
    fs.mkdirSync(this.#opts.dir, { recursive: true, mode: 0o750 });
    for (const entry of fs.readdirSync(this.#opts.dir)) fs.rmSync(path.join(this.#opts.dir, entry), { recursive: true, force: true });
    const server = new grpc.Server();
    server.addService(registrationService, {
      Register: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        const parsed = RegisterRequest.safeParse(call.request);
        if (!parsed.success) {
          callback(statusError(grpc.status.INVALID_ARGUMENT, `malformed RegisterRequest: ${parsed.error.message}`));
          return;
        }
        const problem = registrationProblem(parsed.data);
        if (problem !== undefined) {
          this.#log.warn({ resource: parsed.data.resource_name, problem }, 'registration refused');
          callback(statusError(grpc.status.INVALID_ARGUMENT, problem));
          return;
        }
        callback(null, {});
        void this.#connect(parsed.data);
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(unixTarget(this.socketPath), grpc.ServerCredentials.createInsecure(), (err) => (err === null ? resolve() : reject(err)));
    });
    this.#server = server;
    this.#log.info({ socket: this.socketPath }, 'device manager serving Registration');
  }

  async #connect(request: RegisterRequest): Promise<void> {
    const name = request.resource_name;
    const client = new grpc.Client(unixTarget(path.join(this.#opts.dir, request.endpoint)), grpc.credentials.createInsecure());
    try {
      const options = await callUnary(client, method(devicePluginService, 'GetDevicePluginOptions'), {}, DevicePluginOptions, 5000);
      const def = method(devicePluginService, 'ListAndWatch');
      const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {});
      const resource = this.#resources.get(name) ?? { units: new Map<string, boolean>(), endpoint: undefined, held: new Map<string, readonly string[]>() };
      this.#resources.set(name, resource);
      const previous = resource.endpoint;
      resource.endpoint = { client, stream };
      if (previous !== undefined) this.#close(previous);
      this.#log.info({ resource: name, endpoint: request.endpoint, options }, 'device plugin registered');
      stream.on('data', (message: unknown) => {
        const list = ListAndWatchResponse.safeParse(message);
        if (!list.success) {
          this.#log.warn({ resource: name, problem: list.error.message }, 'malformed ListAndWatch response; ignored');
          return;
        }
        resource.units = new Map(list.data.devices.map((d) => [d.ID, d.health === HEALTHY]));
        this.#opts.onChange();
      });
      const gone = (err?: Error): void => {
        if (resource.endpoint?.stream !== stream) return;
        this.#log.warn({ resource: name, err }, 'device plugin stream ended; its units are unavailable');
        resource.endpoint = undefined;
        for (const id of resource.units.keys()) resource.units.set(id, false);
        client.close();
        this.#opts.onChange();
      };
      stream.on('error', gone);
      stream.on('end', () => gone());
    } catch (err) {
      this.#log.warn({ err, resource: name }, 'cannot reach the registered device plugin');
      client.close();
    }
  }

  #close(endpoint: Endpoint): void {
    endpoint.stream.cancel();
    endpoint.client.close();
  }

  /** Capacity and allocatable of every resource a plugin registered. */
  resources(): { capacity: Record<string, string>; allocatable: Record<string, string> } {
    const capacity: Record<string, string> = {};
    const allocatable: Record<string, string> = {};
    for (const [name, r] of this.#resources) {
      capacity[name] = String(r.units.size);
      allocatable[name] = String([...r.units.values()].filter(Boolean).length);
    }
    return { capacity, allocatable };
  }

  /** The registered resources. */
  registered(): string[] {
    return [...this.#resources].filter(([, r]) => r.endpoint !== undefined).map(([name]) => name);
  }

  /**
   * Allocates the units a pod's container asks for (its limits, else requests) of every
   * registered resource and calls the plugin's Allocate; a pod keeps its units until
   * `release`. Resources no plugin registered are left alone.
   */
  async allocate(podUid: string, container: string, resources: Readonly<Record<string, string>>): Promise<ContainerDevices> {
    const answers: ContainerAllocateResponse[] = [];
    for (const [name, quantity] of Object.entries(resources)) {
      const resource = this.#resources.get(name);
      if (resource === undefined) continue;
      const count = Number(quantity);
      if (!Number.isInteger(count) || count < 0) throw new DeviceAllocationError(`container ${container} asks for ${quantity} of ${name}, not a whole number`);
      if (count === 0) continue;
      const endpoint = resource.endpoint;
      if (endpoint === undefined) throw new DevicesNotReadyError(`no device plugin serves ${name} now`);
      const key = `${podUid}/${container}`;
      const taken = new Set([...resource.held].filter(([k]) => k !== key).flatMap(([, ids]) => ids));
      const free = [...resource.units].filter(([id, healthy]) => healthy && !taken.has(id)).map(([id]) => id);
      const ids = resource.held.get(key) ?? free.slice(0, count);
      if (ids.length < count) throw new DevicesNotReadyError(`${name}: ${count} wanted, ${free.length} healthy and free`);
      resource.held.set(key, ids);
      try {
        const response = await callUnary(endpoint.client, method(devicePluginService, 'Allocate'), { container_requests: [{ devices_ids: ids }] }, AllocateResponse, ALLOCATE_TIMEOUT_MS);
        const answer = response.container_responses[0];
        if (response.container_responses.length !== 1 || answer === undefined) throw new DeviceAllocationError(`the ${name} plugin answered for ${response.container_responses.length} containers, not 1`);
        answers.push(answer);
      } catch (err) {
        resource.held.delete(key);
        if (err instanceof DeviceAllocationError) throw err;
        throw new DeviceAllocationError(`allocating ${name} for container ${container} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    return {
      devices: answers.flatMap((a) => a.devices.map((d) => ({ hostPath: d.host_path, containerPath: d.container_path, permissions: d.permissions }))),
      mounts: answers.flatMap((a) => a.mounts.map((m) => ({ hostPath: m.host_path, containerPath: m.container_path, readOnly: m.read_only }))),
      envs: Object.assign({}, ...answers.map((a) => a.envs)) as Record<string, string>,
    };
  }

  /** Frees every unit the pod holds. */
  release(podUid: string): void {
    for (const r of this.#resources.values()) for (const key of [...r.held.keys()]) if (key.startsWith(`${podUid}/`)) r.held.delete(key);
  }

  async stop(): Promise<void> {
    for (const r of this.#resources.values()) if (r.endpoint !== undefined) this.#close(r.endpoint);
    this.#resources.clear();
    const server = this.#server;
    this.#server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    fs.rmSync(this.socketPath, { force: true });
  }
}

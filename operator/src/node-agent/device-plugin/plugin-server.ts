// One device's plugin: the DevicePlugin gRPC service on its socket in the kubelet's
// device-plugins directory. ListAndWatch streams the units (every stream gets the list
// at once and again whenever the device node's health changes); Allocate hands out the
// device node; every request is parsed before it is used. Health is read from the host
// by `probe` on each `refresh()` (the caller's timer), so that a removed device node
// turns every unit Unhealthy and the kubelet stops admitting pods for it.
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { allocate, AllocationError, listResponse, unitIds, type DeviceKind, type DeviceNodeState } from './devices.ts';
import {
  AllocateRequest,
  devicePluginService,
  Empty,
  PreferredAllocationRequest,
  PreStartContainerRequest,
  statusError,
  unixTarget,
  type DevicePluginOptions,
  type ListAndWatchResponse,
} from './protocol.ts';

export class PluginServeError extends Error {
  override readonly name = 'PluginServeError';
}

export interface PluginServerOptions {
  readonly kind: DeviceKind;
  readonly units: number;
  readonly socketPath: string;
  /** Reads the device node's state on the host. */
  readonly probe: () => Promise<DeviceNodeState>;
  readonly log: Logger;
}

export const PLUGIN_OPTIONS: DevicePluginOptions = { pre_start_required: false, get_preferred_allocation_available: false };

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T | Partial<grpc.StatusObject> {
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : statusError(grpc.status.INVALID_ARGUMENT, `malformed ${what}: ${parsed.error.message}`);
}

function isStatus(value: unknown): value is Partial<grpc.StatusObject> {
  return typeof value === 'object' && value !== null && 'code' in value && 'details' in value;
}

export class PluginServer {
  readonly #opts: PluginServerOptions;
  readonly #ids: readonly string[];
  readonly #known: ReadonlySet<string>;
  readonly #streams = new Set<grpc.ServerWritableStream<object, object>>();
  readonly #log: Logger;
  #server: grpc.Server | undefined;
  #state: DeviceNodeState = 'missing';

  constructor(opts: PluginServerOptions) {
    this.#opts = opts;
    this.#ids = unitIds(opts.kind, opts.units);
    this.#known = new Set(this.#ids);
    this.#log = opts.log.child({ resource: opts.kind.resource });
  }

  get state(): DeviceNodeState {
    return this.#state;
  }

  /** The list ListAndWatch sends now. */
  list(): ListAndWatchResponse {
    return listResponse(this.#ids, this.#state);
  }

  /** Probes the device, removes a stale socket file and serves on the socket. */
  async start(): Promise<void> {
    this.#state = await this.#opts.probe();
    await rm(this.#opts.socketPath, { force: true });
    const server = new grpc.Server();
    server.addService(devicePluginService, {
      GetDevicePluginOptions: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        const req = parse(Empty, call.request, 'GetDevicePluginOptions request');
        if (isStatus(req)) callback(req);
        else callback(null, PLUGIN_OPTIONS);
      },
      ListAndWatch: (call: grpc.ServerWritableStream<object, object>) => {
        const req = parse(Empty, call.request, 'ListAndWatch request');
        if (isStatus(req)) {
          call.emit('error', req);
          return;
        }
        this.#streams.add(call);
        const forget = (): void => {
          this.#streams.delete(call);
        };
        call.on('cancelled', forget);
        call.on('close', forget);
        call.on('error', forget);
        call.write(this.list());
        this.#log.info({ state: this.#state, units: this.#ids.length }, 'kubelet watching the units');
      },
      Allocate: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        const req = parse(AllocateRequest, call.request, 'AllocateRequest');
        if (isStatus(req)) {
          callback(req);
          return;
        }
        if (this.#state !== 'character-device') {
          callback(statusError(grpc.status.UNAVAILABLE, `${this.#opts.kind.hostPath} is not a character device on this node (${this.#state})`));
          return;
        }
        try {
          const response = allocate(this.#opts.kind, this.#known, req);
          this.#log.info({ containers: req.container_requests.length }, 'allocated');
          callback(null, response);
        } catch (err) {
          if (!(err instanceof AllocationError)) throw err;
          this.#log.warn({ err }, 'allocation refused');
          callback(statusError(grpc.status.INVALID_ARGUMENT, err.message));
        }
      },
      GetPreferredAllocation: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        const req = parse(PreferredAllocationRequest, call.request, 'PreferredAllocationRequest');
        callback(isStatus(req) ? req : statusError(grpc.status.UNIMPLEMENTED, 'this plugin states no preferred allocation'));
      },
      PreStartContainer: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        const req = parse(PreStartContainerRequest, call.request, 'PreStartContainerRequest');
        if (isStatus(req)) callback(req);
        else callback(null, {});
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(unixTarget(this.#opts.socketPath), grpc.ServerCredentials.createInsecure(), (err) => {
        if (err === null) resolve();
        else reject(new PluginServeError(`cannot serve ${this.#opts.kind.resource} on ${this.#opts.socketPath}: ${err.message}`, { cause: err }));
      });
    });
    this.#server = server;
  }

  /** Probes the device node again; a change is sent to every ListAndWatch stream. */
  async refresh(): Promise<boolean> {
    const state = await this.#opts.probe();
    if (state === this.#state) return false;
    this.#log.warn({ from: this.#state, to: state }, 'device node changed');
    this.#state = state;
    const list = this.list();
    for (const stream of this.#streams) stream.write(list);
    return true;
  }

  /** Ends every stream, stops serving and removes the socket file. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await rm(this.#opts.socketPath, { force: true });
  }
}

// The kubelet device-plugin API v1beta1 (api.proto beside this file, as Kubernetes ships
// it) loaded at run time with field names kept as the .proto spells them, the zod shapes
// of every message either side receives, and a typed unary call over a grpc-js Client.
// Both ends use it: the node agent's plugin and the node simulator's kubelet side.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type MethodDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import { z } from 'zod';

/** The API version a plugin registers with (constants.go `Version`). */
export const DEVICE_PLUGIN_API_VERSION = 'v1beta1';
/** The kubelet's Registration socket, in its device-plugins directory (constants.go `KubeletSocket`). */
export const KUBELET_SOCKET = 'kubelet.sock';
/** Where a kubelet with the default root directory keeps plugin sockets (constants.go `DevicePluginPath`). */
export const DEFAULT_DEVICE_PLUGIN_DIR = '/var/lib/kubelet/device-plugins';
export const HEALTHY = 'Healthy';
export const UNHEALTHY = 'Unhealthy';

const definition = loadSync(path.join(import.meta.dirname, 'api.proto'), {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

class ProtocolDefinitionError extends Error {
  override readonly name = 'ProtocolDefinitionError';
}

function service(name: string): ServiceDefinition {
  const found = definition[`v1beta1.${name}`];
  if (found === undefined || 'format' in found) throw new ProtocolDefinitionError(`api.proto defines no service v1beta1.${name}`);
  return found;
}

/** The kubelet's service: plugins call Register on kubelet.sock. */
export const registrationService: ServiceDefinition = service('Registration');
/** The plugin's service: the kubelet calls it on the plugin's endpoint socket. */
export const devicePluginService: ServiceDefinition = service('DevicePlugin');

/** A method of `svc` by its .proto name. */
export function method(svc: ServiceDefinition, name: string): MethodDefinition<object, object> {
  const found = svc[name];
  if (found === undefined) throw new ProtocolDefinitionError(`the service has no method ${name}`);
  return found;
}

// An ID or a path is bounded: any process on the node may connect to either socket.
const id = z.string().min(1).max(63);
const hostPath = z.string().min(1).max(4096);

export const Empty = z.object({});

export const DevicePluginOptions = z.object({
  pre_start_required: z.boolean(),
  get_preferred_allocation_available: z.boolean(),
});
export type DevicePluginOptions = z.infer<typeof DevicePluginOptions>;

export const RegisterRequest = z.object({
  version: z.string().max(32),
  endpoint: z.string().max(255),
  resource_name: z.string().max(253),
  options: DevicePluginOptions.nullable(),
});
export type RegisterRequest = z.infer<typeof RegisterRequest>;

export const Device = z.object({
  ID: id,
  health: z.enum([HEALTHY, UNHEALTHY]),
  topology: z.unknown().nullable(),
});
export type Device = z.infer<typeof Device>;

export const ListAndWatchResponse = z.object({ devices: z.array(Device).max(100_000) });
export type ListAndWatchResponse = z.infer<typeof ListAndWatchResponse>;

export const AllocateRequest = z.object({
  container_requests: z.array(z.object({ devices_ids: z.array(id).max(10_000) })).max(256),
});
export type AllocateRequest = z.infer<typeof AllocateRequest>;

export const DeviceSpec = z.object({
  container_path: hostPath,
  host_path: hostPath,
  permissions: z.string().regex(/^[rwm]{1,3}$/, { error: 'permissions must be made of r, w and m' }),
});
export type DeviceSpec = z.infer<typeof DeviceSpec>;

export const MountSpec = z.object({ container_path: hostPath, host_path: hostPath, read_only: z.boolean() });

export const ContainerAllocateResponse = z.object({
  envs: z.record(z.string(), z.string()),
  mounts: z.array(MountSpec),
  devices: z.array(DeviceSpec),
  annotations: z.record(z.string(), z.string()),
  cdi_devices: z.array(z.object({ name: z.string() })),
});
export type ContainerAllocateResponse = z.infer<typeof ContainerAllocateResponse>;

export const AllocateResponse = z.object({ container_responses: z.array(ContainerAllocateResponse).max(256) });
export type AllocateResponse = z.infer<typeof AllocateResponse>;

export const PreStartContainerRequest = z.object({ devices_ids: z.array(id).max(10_000) });

export const PreferredAllocationRequest = z.object({
  container_requests: z
    .array(
      z.object({
        available_deviceIDs: z.array(id).max(10_000),
        must_include_deviceIDs: z.array(id).max(10_000),
        allocation_size: z.number().int(),
      }),
    )
    .max(256),
});

/** A malformed or failed exchange with the other end of a device-plugin socket. */
export class DevicePluginProtocolError extends Error {
  override readonly name = 'DevicePluginProtocolError';
}

/** `unix:<absolute path>`, the target grpc-js dials and binds for a socket file. */
export function unixTarget(socketPath: string): string {
  return `unix:${path.resolve(socketPath)}`;
}

/** One unary call with a deadline; the answer parsed with `schema`. */
export function callUnary<T>(client: grpc.Client, def: MethodDefinition<object, object>, request: object, schema: z.ZodType<T>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: grpc.ServiceError | null, value?: object) => {
        if (err !== null) {
          reject(new DevicePluginProtocolError(`${def.path} failed: ${err.details === '' ? err.message : err.details}`, { cause: err }));
          return;
        }
        const parsed = schema.safeParse(value);
        if (parsed.success) resolve(parsed.data);
        else reject(new DevicePluginProtocolError(`${def.path} answered an unexpected message: ${parsed.error.message}`));
      },
    );
  });
}

/** A gRPC error status for a handler's callback. */
export function statusError(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details };
}

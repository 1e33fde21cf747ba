// The devices the node agent offers through the kubelet device-plugin API, and the pure
// decisions about them: the shareable units a resource advertises, their health, and
// what an allocation gives a container (the device node, read-write; nothing else).
import { HEALTHY, UNHEALTHY, type AllocateRequest, type AllocateResponse, type Device, type ListAndWatchResponse } from './protocol.ts';
import { KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE } from './resource-names.ts';

export { DEVICE_RESOURCE_PREFIX, KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE } from './resource-names.ts';

export interface DeviceKind {
  /** The extended resource pods request. */
  readonly resource: string;
  /** The device node on the host, and where the container gets it. */
  readonly hostPath: string;
  /** The device node relative to the agent's view of /dev (KEYVIRT_DEV_ROOT). */
  readonly devName: string;
  /** The plugin's socket file name in the kubelet's device-plugins directory. */
  readonly endpoint: string;
  /** Prefix of the unit IDs. */
  readonly unitPrefix: string;
}

export const DEVICE_KINDS: readonly DeviceKind[] = [
  { resource: KVM_RESOURCE, hostPath: '/dev/kvm', devName: 'kvm', endpoint: 'keyvirt-kvm.sock', unitPrefix: 'kvm' },
  { resource: TUN_RESOURCE, hostPath: '/dev/net/tun', devName: 'net/tun', endpoint: 'keyvirt-tun.sock', unitPrefix: 'tun' },
  { resource: VHOST_NET_RESOURCE, hostPath: '/dev/vhost-net', devName: 'vhost-net', endpoint: 'keyvirt-vhost-net.sock', unitPrefix: 'vhost-net' },
];

/** Units per device when not configured: the kubelet's default pod limit, so every pod of a node can hold one. */
export const DEFAULT_UNITS = 110;
export const MAX_UNITS = 10_000;

/** The unit IDs of `kind`: `kvm-0000` … (a unit is a share of the one device node, not a device of its own). */
export function unitIds(kind: DeviceKind, units: number): string[] {
  if (!Number.isInteger(units) || units < 1 || units > MAX_UNITS) throw new RangeError(`units must be an integer from 1 to ${MAX_UNITS}, not ${units}`);
  const width = String(units - 1).length;
  return Array.from({ length: units }, (_, i) => `${kind.unitPrefix}-${String(i).padStart(width, '0')}`);
}

/** What the device node looks like on the host right now. */
export type DeviceNodeState = 'character-device' | 'missing' | 'not-a-character-device';

/** Every unit shares the device node's health: Healthy only while it is a character device. */
export function listResponse(ids: readonly string[], state: DeviceNodeState): ListAndWatchResponse {
  const health = state === 'character-device' ? HEALTHY : UNHEALTHY;
  return { devices: ids.map((ID): Device => ({ ID, health, topology: null })) };
}

export class AllocationError extends Error {
  override readonly name = 'AllocationError';
}

/**
 * The answer to an Allocate: for each container, the device node at the same path, read
 * and write (no mknod). Refuses IDs this plugin never advertised, a request with no
 * container, and a container asking for no unit.
 */
export function allocate(kind: DeviceKind, known: ReadonlySet<string>, request: AllocateRequest): AllocateResponse {
  if (request.container_requests.length === 0) throw new AllocationError(`an allocation of ${kind.resource} names no container`);
  return {
    container_responses: request.container_requests.map((c, i) => {
      if (c.devices_ids.length === 0) throw new AllocationError(`container request ${i} asks for no ${kind.resource} unit`);
      const unknown = c.devices_ids.filter((d) => !known.has(d));
      if (unknown.length > 0) throw new AllocationError(`container request ${i} names units this plugin does not offer: ${unknown.slice(0, 5).join(', ')}`);
      return {
        envs: {},
        mounts: [],
        devices: [{ container_path: kind.hostPath, host_path: kind.hostPath, permissions: 'rw' }],
        annotations: {},
        cdi_devices: [],
      };
    }),
  };
}

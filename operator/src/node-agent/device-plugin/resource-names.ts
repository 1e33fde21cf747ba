// The extended resources the node agent's device plugins advertise: the names launcher
// pods request. Kept apart from the plugin (no gRPC here) so that the operator's
// placement and pod rendering can import them.
import { parseQuantity } from '@keyvirt/crds';

export const DEVICE_RESOURCE_PREFIX = 'devices.keyvirt.io/';
export const KVM_RESOURCE = `${DEVICE_RESOURCE_PREFIX}kvm`;
export const TUN_RESOURCE = `${DEVICE_RESOURCE_PREFIX}tun`;
export const VHOST_NET_RESOURCE = `${DEVICE_RESOURCE_PREFIX}vhost-net`;

/** The device resources a node has units of now (allocatable above zero), by name. */
export function advertisedDevices(allocatable: Readonly<Record<string, string>> | undefined): string[] {
  return Object.entries(allocatable ?? {})
    .filter(([name, quantity]) => name.startsWith(DEVICE_RESOURCE_PREFIX) && (parseQuantity(quantity) ?? 0) >= 1)
    .map(([name]) => name)
    .sort();
}

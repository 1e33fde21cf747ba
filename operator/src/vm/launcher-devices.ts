// Which node devices a launcher pod requests from the node agent's device plugins
// (docs/adr/0079): /dev/kvm whenever the chosen node advertises it (the launcher then
// decides KVM or TCG itself), /dev/net/tun when a NIC is bound by bridge (the launcher
// creates its tap). /dev/vhost-net is advertised but never requested: QEMU's tap runs
// without vhost here. A node that advertises nothing gets no request: the pod stays
// schedulable there, and without the device the launcher emulates or refuses to start.
import type { VirtualMachine } from '@keyvirt/crds';
import { KVM_RESOURCE, TUN_RESOURCE } from '../node-agent/device-plugin/resource-names.ts';
import { needsTun, type PodNetworkMode } from './launcher-pod-network.ts';

/** Extended resource → count for the launcher container's requests and limits. */
export function launcherDeviceRequests(vm: VirtualMachine, advertised: readonly string[], podNetwork?: PodNetworkMode): Record<string, string> {
  const wanted: Record<string, string> = {};
  if (advertised.includes(KVM_RESOURCE)) wanted[KVM_RESOURCE] = '1';
  // A node-made tap (ADR 0094) or the launcher's own for a bridge NIC.
  if (advertised.includes(TUN_RESOURCE) && needsTun(vm, podNetwork)) wanted[TUN_RESOURCE] = '1';
  return wanted;
}

// The pod network of a launcher pod (ADR 0094). With the operator's --pod-network
// node-agent, the VM's first interface is on the pod network prepared by the node agent:
// the launcher pod is annotated keyvirt.io/pod-network=node-agent (the request; what is
// set up is read from the VM, never from the pod), its configuration marks the interface
// `podNetwork` (QEMU opens the node-made tap, the launcher serves DHCP) and it requests
// /dev/net/tun; the launcher needs no capability. Without it (user-mode), masquerade runs
// in QEMU's user-mode network and a bridge NIC needs NET_ADMIN for the launcher's own tap.
import type { VirtualMachine } from '@keyvirt/crds';

export const ANNOTATION_POD_NETWORK = 'keyvirt.io/pod-network';
export const POD_NETWORK_NODE_AGENT = 'node-agent';

export type PodNetworkMode = 'node-agent' | 'user-mode';

/** The interface the node agent prepares, when it does. */
export function podNetworkInterface(vm: VirtualMachine, mode: PodNetworkMode | undefined): string | undefined {
  return mode === 'node-agent' ? vm.spec.template.interfaces[0]?.name : undefined;
}

/** The launcher configuration's `interfaces`, absent (the configuration unchanged) without the node agent. */
export function podNetworkConfig(vm: VirtualMachine, mode: PodNetworkMode | undefined): { interfaces?: Record<string, { podNetwork: true }> } {
  const name = podNetworkInterface(vm, mode);
  return name === undefined ? {} : { interfaces: { [name]: { podNetwork: true } } };
}

export function podNetworkAnnotations(vm: VirtualMachine, mode: PodNetworkMode | undefined): Record<string, string> {
  return podNetworkInterface(vm, mode) === undefined ? {} : { [ANNOTATION_POD_NETWORK]: POD_NETWORK_NODE_AGENT };
}

/** Whether QEMU needs /dev/net/tun: a node-made tap, or the launcher's own for a bridge NIC. */
export function needsTun(vm: VirtualMachine, mode: PodNetworkMode | undefined): boolean {
  return podNetworkInterface(vm, mode) !== undefined || vm.spec.template.interfaces.some((i) => i.binding === 'bridge');
}

/** Whether the launcher creates a tap itself (user-mode with a bridge NIC): NET_ADMIN. */
export function launcherMakesTap(vm: VirtualMachine, mode: PodNetworkMode | undefined): boolean {
  return mode !== 'node-agent' && vm.spec.template.interfaces.some((i) => i.binding === 'bridge');
}

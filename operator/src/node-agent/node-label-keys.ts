// The node labels and extended resources the node agent publishes and the VM
// scheduler reads: the contract between the two (KubeVirt's node-labeller layout,
// under KeyVirt's own domain).

export const KVM_LABEL = 'keyvirt.io/kvm';
export const ACCELERATOR_LABEL = 'keyvirt.io/accelerator';
/** Set once the node agent has described the node; the scheduler prefers described nodes. */
export const NODE_AGENT_LABEL = 'keyvirt.io/node-agent';
export const CPU_MODEL_LABEL_PREFIX = 'cpu-model.node.keyvirt.io/';
export const HOST_MODEL_LABEL_PREFIX = 'host-model-cpu.node.keyvirt.io/';
export const CPU_FEATURE_LABEL_PREFIX = 'cpu-feature.node.keyvirt.io/';
export const CPU_VENDOR_LABEL_PREFIX = 'cpu-vendor.node.keyvirt.io/';
/** Why the node runs guests with the accelerator it does (annotation, free text). */
export const ACCELERATOR_REASON_ANNOTATION = 'keyvirt.io/accelerator-reason';
/** The PCI devices behind each advertised resource (annotation, JSON). */
export const PCI_DEVICES_ANNOTATION = 'keyvirt.io/pci-devices';
/** `true` when a launcher without capabilities may call userfaultfd(2) here: the node can be a post-copy target (docs/adr/0057). */
export const POSTCOPY_LABEL = 'keyvirt.io/postcopy';
/** Why the node can or cannot be a post-copy target (annotation, free text). */
export const POSTCOPY_REASON_ANNOTATION = 'keyvirt.io/postcopy-reason';
/** Extended resources for passthrough-capable PCI devices: `keyvirt.io/pci-<vendor>-<device>`. */
export const PCI_RESOURCE_PREFIX = 'keyvirt.io/pci-';

/** Every label prefix the node agent owns: labels under them that no longer apply are removed. */
export const OWNED_LABEL_PREFIXES: readonly string[] = [
  CPU_MODEL_LABEL_PREFIX,
  HOST_MODEL_LABEL_PREFIX,
  CPU_FEATURE_LABEL_PREFIX,
  CPU_VENDOR_LABEL_PREFIX,
];

export function pciResourceName(vendorId: string, deviceId: string): string {
  return `${PCI_RESOURCE_PREFIX}${vendorId.toLowerCase()}-${deviceId.toLowerCase()}`;
}

// The operator's request to the node agent (ADR 0094): a launcher pod annotated
// keyvirt.io/pod-network=node-agent gets its network namespace prepared by the node
// agent of its node (tap, bridge, NAT, the guest's lease) for the VM's first interface.
// The annotation only asks; what is set up is read from the VM, never from the pod.
export const ANNOTATION_POD_NETWORK = 'keyvirt.io/pod-network';
export const POD_NETWORK_NODE_AGENT = 'node-agent';

// What the node agent says about its node: labels (KVM, accelerator, CPU vendor,
// models, host model, features), annotations (why the accelerator, which PCI
// devices, post-copy readiness), and extended resources for assignable PCI devices.
import type { CpuDescription } from './cpu-features.ts';
import {
  ACCELERATOR_LABEL,
  ACCELERATOR_REASON_ANNOTATION,
  CPU_FEATURE_LABEL_PREFIX,
  CPU_MODEL_LABEL_PREFIX,
  CPU_VENDOR_LABEL_PREFIX,
  HOST_MODEL_LABEL_PREFIX,
  KVM_LABEL,
  NODE_AGENT_LABEL,
  PCI_DEVICES_ANNOTATION,
} from './node-label-keys.ts';
import { pciResourceCounts, type PciAssessment } from './pci-discovery.ts';
import { postCopyNodeMetadata, type PostCopyProbe } from './post-copy.ts';

export interface KvmProbe {
  /** The CPU advertises hardware virtualization (vmx or svm). */
  readonly hardwareVirtualization: boolean;
  /** /dev/kvm opens read-write; the error message when it does not. */
  readonly deviceOpens: boolean;
  readonly deviceError?: string | undefined;
}

export interface NodeDescription {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Extended resource → device count (becomes capacity and allocatable). */
  readonly resources: ReadonlyMap<string, number>;
}

/** The agent's version label value: bumped when the label layout changes. */
export const NODE_AGENT_VERSION = 'v1';

// A label name part is at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends.
const LABEL_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

function kvmVerdict(probe: KvmProbe): { kvm: boolean; reason: string } {
  if (!probe.hardwareVirtualization) {
    const device = probe.deviceOpens ? '/dev/kvm is present' : '/dev/kvm is unusable';
    return {
      kvm: false,
      reason: `the CPU advertises no hardware virtualization (no vmx/svm flag) and ${device}; guests run under TCG emulation`,
    };
  }
  if (!probe.deviceOpens) {
    return { kvm: false, reason: `/dev/kvm cannot be opened (${probe.deviceError ?? 'unknown error'}); guests run under TCG emulation` };
  }
  return { kvm: true, reason: 'hardware virtualization and /dev/kvm available' };
}

function flagLabels(prefix: string, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) if (LABEL_NAME.test(name)) out[`${prefix}${name}`] = 'true';
  return out;
}

export function describeNode(cpu: CpuDescription, probe: KvmProbe, pci: readonly PciAssessment[], postCopy?: PostCopyProbe): NodeDescription {
  const verdict = kvmVerdict(probe);
  const postCopyMetadata = postCopy === undefined ? { labels: {}, annotations: {} } : postCopyNodeMetadata(postCopy);
  const labels: Record<string, string> = {
    [KVM_LABEL]: String(verdict.kvm),
    [ACCELERATOR_LABEL]: verdict.kvm ? 'kvm' : 'tcg',
    [NODE_AGENT_LABEL]: NODE_AGENT_VERSION,
    ...flagLabels(CPU_VENDOR_LABEL_PREFIX, [cpu.vendor]),
    ...flagLabels(CPU_MODEL_LABEL_PREFIX, cpu.models),
    ...flagLabels(HOST_MODEL_LABEL_PREFIX, cpu.hostModel === undefined ? [] : [cpu.hostModel]),
    ...flagLabels(CPU_FEATURE_LABEL_PREFIX, cpu.features),
    ...postCopyMetadata.labels,
  };
  const devices = pci.map((a) => ({
    address: a.device.address,
    resourceName: a.resourceName,
    iommuGroup: a.device.iommuGroup ?? null,
    driver: a.device.driver ?? null,
    assignable: a.assignable,
    ...(a.assignable ? {} : { reason: a.reason }),
  }));
  return {
    labels,
    annotations: {
      [ACCELERATOR_REASON_ANNOTATION]: verdict.reason,
      [PCI_DEVICES_ANNOTATION]: JSON.stringify(devices),
      ...postCopyMetadata.annotations,
    },
    resources: pciResourceCounts(pci),
  };
}

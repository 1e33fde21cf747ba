// The filters a node must pass to take a VM. Each returns the reasons it rejects
// the node (empty when the node passes); all filters run so that a person sees
// every reason at once.
import type { NodeShape } from './kube-shapes.ts';
import {
  ACCELERATOR_LABEL,
  CPU_FEATURE_LABEL_PREFIX,
  CPU_MODEL_LABEL_PREFIX,
  KVM_LABEL,
} from '../node-agent/node-label-keys.ts';
import { BASELINE_CPU_MODELS, qemuFeatureName } from '../node-agent/cpu-features.ts';
import { firstUntoleratedTaint, matchesNodeSelectorAndAffinity } from './node-matching.ts';
import type { NodeUsage } from './node-usage.ts';
import type { NodeRejection, PlacementRequest } from './placement-types.ts';
import { formatBytes, formatCpuMillis } from './resource-quantity.ts';

export type NodeFilter = (request: PlacementRequest, node: NodeShape, usage: NodeUsage) => NodeRejection[];

const cordoned: NodeFilter = (_request, node) =>
  node.spec?.unschedulable === true
    ? [{ summary: 'node(s) were unschedulable', detail: 'node is cordoned (spec.unschedulable)' }]
    : [];

const notReady: NodeFilter = (_request, node) => {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready === undefined || ready.status === 'True') return [];
  return [{ summary: 'node(s) were not ready', detail: `node is not Ready (${ready.reason ?? ready.status})` }];
};

const taints: NodeFilter = (request, node) => {
  const taint = firstUntoleratedTaint(node, request.tolerations ?? []);
  if (taint === undefined) return [];
  const shown = `{${taint.key}: ${taint.value ?? ''}}`;
  return [{ summary: `node(s) had untolerated taint ${shown}`, detail: `untolerated taint ${shown} (${taint.effect})` }];
};

const selectorAndAffinity: NodeFilter = (request, node) =>
  matchesNodeSelectorAndAffinity(node, request.nodeSelector, request.affinity?.nodeAffinity)
    ? []
    : [
        {
          summary: "node(s) didn't match the VM's node affinity/selector",
          detail: "labels do not match the VM's nodeSelector or required node affinity",
        },
      ];

const localDisks: NodeFilter = (request, node) =>
  request.requiredNode === undefined || request.requiredNode === node.metadata?.name
    ? []
    : [
        {
          summary: "node(s) didn't hold the VM's local disks",
          detail: `the VM's disks are on a local storage domain of node ${request.requiredNode}`,
        },
      ];

const hardwareKvm: NodeFilter = (request, node) => {
  if (request.allowEmulation) return [];
  const labels = node.metadata?.labels ?? {};
  if (labels[KVM_LABEL] === 'true') return [];
  const known = labels[KVM_LABEL] === undefined ? 'not described by the node agent' : 'no hardware KVM';
  const accel = labels[ACCELERATOR_LABEL] ?? 'unknown';
  return [
    {
      summary: 'node(s) had no hardware KVM (emulation is not allowed)',
      detail: `${known} (accelerator ${accel}); emulation is not allowed for this VM`,
    },
  ];
};

const cpuCompatibility: NodeFilter = (request, node) => {
  const labels = node.metadata?.labels ?? {};
  // Under TCG QEMU emulates the model itself: the host CPU does not limit it.
  if (request.allowEmulation && labels[KVM_LABEL] !== 'true') return [];
  const out: NodeRejection[] = [];
  const model = request.cpuModel;
  if (model !== undefined && !BASELINE_CPU_MODELS.includes(model) && labels[`${CPU_MODEL_LABEL_PREFIX}${model}`] !== 'true') {
    out.push({
      summary: `node(s) cannot run CPU model ${model}`,
      detail: `CPU model ${model} is not supported by this node's CPU`,
    });
  }
  const has = (f: string): boolean => labels[`${CPU_FEATURE_LABEL_PREFIX}${qemuFeatureName(f)}`] === 'true';
  const missing = (request.requiredCpuFeatures ?? []).filter((f) => !has(f));
  if (missing.length > 0) {
    out.push({
      summary: 'node(s) lacked required CPU features',
      detail: `CPU lacks required feature(s) ${missing.map(qemuFeatureName).join(', ')}`,
    });
  }
  const present = (request.forbiddenCpuFeatures ?? []).filter(has);
  if (present.length > 0) {
    out.push({
      summary: 'node(s) had forbidden CPU features',
      detail: `CPU has forbidden feature(s) ${present.map(qemuFeatureName).join(', ')}`,
    });
  }
  return out;
};

function show(resource: string, value: number): string {
  if (resource === 'cpu') return formatCpuMillis(value);
  if (resource === 'memory' || resource.includes('storage')) return formatBytes(value);
  return String(value);
}

const resourceFit: NodeFilter = (request, _node, usage) => {
  const out: NodeRejection[] = [];
  const podLimit = usage.allocatable.get('pods');
  if (podLimit !== undefined && usage.podCount + 1 > podLimit) {
    out.push({ summary: 'Too many pods', detail: `already runs ${usage.podCount} of ${podLimit} pods` });
  }
  const resources = [...request.resources].filter(([, v]) => v > 0).sort(([a], [b]) => a.localeCompare(b));
  for (const [resource, wanted] of resources) {
    const allocatable = usage.allocatable.get(resource);
    const used = usage.requested.get(resource) ?? 0;
    if (allocatable === undefined || allocatable === 0) {
      out.push({ summary: `Insufficient ${resource}`, detail: `node offers no ${resource} (needs ${show(resource, wanted)})` });
      continue;
    }
    const free = allocatable - used;
    if (wanted > free) {
      out.push({
        summary: `Insufficient ${resource}`,
        detail:
          `${resource}: needs ${show(resource, wanted)}, ${show(resource, Math.max(free, 0))} free ` +
          `of ${show(resource, allocatable)} allocatable`,
      });
    }
  }
  return out;
};

/** The filters in the order their reasons are listed. */
export const NODE_FILTERS: readonly NodeFilter[] = [
  cordoned,
  notReady,
  taints,
  selectorAndAffinity,
  localDisks,
  hardwareKvm,
  cpuCompatibility,
  resourceFit,
];

// The merge patches that bring a node's labels, annotations and extended
// resources in line with the agent's description, removing what the agent set
// earlier and no longer applies. Empty patches mean nothing to write.
import { z } from 'zod';
import type { NodeDescription } from './node-description.ts';
import {
  ACCELERATOR_LABEL,
  ACCELERATOR_REASON_ANNOTATION,
  KVM_LABEL,
  NODE_AGENT_LABEL,
  OWNED_LABEL_PREFIXES,
  PCI_DEVICES_ANNOTATION,
  PCI_RESOURCE_PREFIX,
  POSTCOPY_LABEL,
  POSTCOPY_REASON_ANNOTATION,
} from './node-label-keys.ts';

/** The part of a Node the agent reads, parsed at the API edge. */
export const NodeView = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  status: z
    .looseObject({
      capacity: z.record(z.string(), z.string()).optional(),
      allocatable: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
});
export type NodeView = z.infer<typeof NodeView>;

type Patch = Record<string, string | null>;

export interface NodePatches {
  /** `{metadata: {labels, annotations}}` for PATCH /api/v1/nodes/<name>, or undefined when in line. */
  readonly metadata: { metadata: { labels?: Patch; annotations?: Patch } } | undefined;
  /** `{status: {capacity, allocatable}}` for PATCH /api/v1/nodes/<name>/status, or undefined when in line. */
  readonly status: { status: { capacity: Patch; allocatable: Patch } } | undefined;
}

const OWNED_EXACT_LABELS = new Set([KVM_LABEL, ACCELERATOR_LABEL, NODE_AGENT_LABEL, POSTCOPY_LABEL]);
const OWNED_ANNOTATIONS = new Set([ACCELERATOR_REASON_ANNOTATION, PCI_DEVICES_ANNOTATION, POSTCOPY_REASON_ANNOTATION]);

function isOwnedLabel(key: string): boolean {
  return OWNED_EXACT_LABELS.has(key) || OWNED_LABEL_PREFIXES.some((p) => key.startsWith(p));
}

function diff(current: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>>, owned: (k: string) => boolean): Patch {
  const patch: Patch = {};
  for (const [k, v] of Object.entries(wanted)) if (current[k] !== v) patch[k] = v;
  for (const k of Object.keys(current)) if (owned(k) && !(k in wanted)) patch[k] = null;
  return patch;
}

const isEmpty = (p: Patch): boolean => Object.keys(p).length === 0;

export function nodePatches(node: NodeView, description: NodeDescription): NodePatches {
  const labels = diff(node.metadata.labels ?? {}, description.labels, isOwnedLabel);
  const annotations = diff(node.metadata.annotations ?? {}, description.annotations, (k) => OWNED_ANNOTATIONS.has(k));
  const wantedResources = Object.fromEntries([...description.resources].map(([k, v]) => [k, String(v)]));
  const ownedResource = (k: string): boolean => k.startsWith(PCI_RESOURCE_PREFIX);
  const capacity = diff(node.status?.capacity ?? {}, wantedResources, ownedResource);
  const allocatable = diff(node.status?.allocatable ?? {}, wantedResources, ownedResource);
  const metadata =
    isEmpty(labels) && isEmpty(annotations)
      ? undefined
      : {
          metadata: {
            ...(isEmpty(labels) ? {} : { labels }),
            ...(isEmpty(annotations) ? {} : { annotations }),
          },
        };
  const status = isEmpty(capacity) && isEmpty(allocatable) ? undefined : { status: { capacity, allocatable } };
  return { metadata, status };
}

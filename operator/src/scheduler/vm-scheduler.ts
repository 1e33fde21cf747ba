// The VM scheduler: filters, then weights, then the answer as required node
// affinity for the launcher pod (so the kube-scheduler still checks fit and binds),
// or Unschedulable with the reasons, counted like the kube-scheduler counts them.
import type { Affinity, NodeSelectorRequirement, NodeSelectorTerm, NodeShape, PodShape } from './kube-shapes.ts';
import { NODE_FILTERS } from './node-filters.ts';
import { rankCandidates, type Candidate } from './node-ranking.ts';
import { usageByNode, type NodeUsage } from './node-usage.ts';
import type {
  PlacementRequest,
  PlacementResult,
  RejectedNode,
  SchedulingPolicy,
} from './placement-types.ts';
import { DEFAULT_SCHEDULING_POLICY } from './placement-types.ts';

const EMPTY_USAGE: NodeUsage = { allocatable: new Map(), requested: new Map(), podCount: 0 };

/** "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were unschedulable." */
export function unschedulableMessage(nodeCount: number, rejected: readonly RejectedNode[]): string {
  if (nodeCount === 0) return '0/0 nodes are available: the cluster has no nodes.';
  const counts = new Map<string, number>();
  for (const r of rejected) {
    for (const summary of new Set(r.reasons.map((reason) => reason.summary))) {
      counts.set(summary, (counts.get(summary) ?? 0) + 1);
    }
  }
  const parts = [...counts]
    .sort(([a, ca], [b, cb]) => cb - ca || a.localeCompare(b))
    .map(([summary, count]) => `${count} ${summary}`);
  return `0/${nodeCount} nodes are available: ${parts.join(', ')}.`;
}

/** The pinning term: the node's hostname label when it has one, its name otherwise. */
function pinRequirement(node: NodeShape): { expressions: NodeSelectorRequirement[]; fields: NodeSelectorRequirement[] } {
  const name = node.metadata?.name ?? '';
  const hostname = node.metadata?.labels?.['kubernetes.io/hostname'];
  if (hostname !== undefined) {
    return { expressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [hostname] }], fields: [] };
  }
  return { expressions: [], fields: [{ key: 'metadata.name', operator: 'In', values: [name] }] };
}

/** The VM's affinity with a requirement that pins the pod to `node` ANDed into every required term. */
export function pinnedAffinity(affinity: Affinity | undefined, node: NodeShape): Affinity {
  const pin = pinRequirement(node);
  const userTerms = affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const base: NodeSelectorTerm[] = userTerms.length === 0 ? [{}] : userTerms;
  const terms = base.map((t): NodeSelectorTerm => {
    const matchExpressions = [...(t.matchExpressions ?? []), ...pin.expressions];
    const matchFields = [...(t.matchFields ?? []), ...pin.fields];
    return {
      ...(matchExpressions.length > 0 ? { matchExpressions } : {}),
      ...(matchFields.length > 0 ? { matchFields } : {}),
    };
  });
  return {
    ...affinity,
    nodeAffinity: {
      ...affinity?.nodeAffinity,
      requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
    },
  };
}

/**
 * Chooses a node for a VM's launcher pod. Pure: `nodes` and `pods` are the
 * informers' view (every pod in the cluster; bound pods and pods already pinned to
 * a node count against that node).
 */
export function placeVm(
  request: PlacementRequest,
  nodes: readonly NodeShape[],
  pods: readonly PodShape[],
  policy: SchedulingPolicy = DEFAULT_SCHEDULING_POLICY,
): PlacementResult {
  return placeVmWithUsage(request, nodes, usageByNode(nodes, pods), policy);
}

/** placeVm with each node's usage given (a ledger's, kept from pod events) instead of summed from the pods. */
export function placeVmWithUsage(
  request: PlacementRequest,
  nodes: readonly NodeShape[],
  usage: ReadonlyMap<string, NodeUsage>,
  policy: SchedulingPolicy = DEFAULT_SCHEDULING_POLICY,
): PlacementResult {
  const rejected: RejectedNode[] = [];
  const candidates: Candidate[] = [];
  for (const node of nodes) {
    const name = node.metadata?.name ?? '';
    const nodeUsage = usage.get(name) ?? EMPTY_USAGE;
    const reasons = NODE_FILTERS.flatMap((filter) => filter(request, node, nodeUsage));
    if (reasons.length > 0) rejected.push({ node: name, reasons });
    else candidates.push({ node, name, usage: nodeUsage });
  }
  if (candidates.length === 0) {
    return { kind: 'Unschedulable', message: unschedulableMessage(nodes.length, rejected), rejected };
  }
  const ranking = rankCandidates(candidates, request, policy);
  const best = ranking[0] ?? '';
  const bestNode = candidates.find((c) => c.name === best)?.node ?? { metadata: { name: best } };
  return { kind: 'Placement', node: best, affinity: pinnedAffinity(request.affinity, bestNode), ranking };
}

/** Per-node detail for an event or a log line: "node-a: cordoned; node-b: memory: needs …". */
export function rejectionDetails(rejected: readonly RejectedNode[]): string {
  return rejected.map((r) => `${r.node}: ${r.reasons.map((x) => x.detail).join('; ')}`).join('. ');
}

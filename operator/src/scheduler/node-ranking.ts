// Weighing the nodes that passed the filters by the cluster's scheduling policy,
// after oVirt's: `evenly_distributed` spreads load and avoids nodes that would go
// above HighUtilization; `power_saving` packs VMs onto busy nodes that stay below
// HighUtilization and keeps under-utilised nodes (below LowUtilization) empty so
// they can be drained and powered off. Utilisation is the larger of the CPU and
// memory fractions of allocatable that pods request.
import type { NodeShape } from './kube-shapes.ts';
import { NODE_AGENT_LABEL } from '../node-agent/node-label-keys.ts';
import { preferredAffinityScore, untoleratedSoftTaints } from './node-matching.ts';
import type { NodeUsage } from './node-usage.ts';
import type { PlacementRequest, SchedulingPolicy } from './placement-types.ts';

export interface Candidate {
  readonly node: NodeShape;
  readonly name: string;
  readonly usage: NodeUsage;
}

interface Score {
  readonly name: string;
  /** Lower is better; the policy's hard preference. */
  readonly tier: number;
  /** Higher is better: the VM's preferred node affinity minus untolerated PreferNoSchedule taints. */
  readonly preference: number;
  /** Lower is better within a tier. */
  readonly load: number;
}

function fraction(usage: NodeUsage, resource: string, extra: number): number {
  const allocatable = usage.allocatable.get(resource) ?? 0;
  if (allocatable <= 0) return 0;
  return ((usage.requested.get(resource) ?? 0) + extra) / allocatable;
}

/** Percent utilisation of a node now and after the VM lands on it. */
export function utilisation(usage: NodeUsage, request: PlacementRequest): { before: number; after: number } {
  const cpu = request.resources.get('cpu') ?? 0;
  const memory = request.resources.get('memory') ?? 0;
  const before = Math.max(fraction(usage, 'cpu', 0), fraction(usage, 'memory', 0)) * 100;
  const after = Math.max(fraction(usage, 'cpu', cpu), fraction(usage, 'memory', memory)) * 100;
  return { before, after };
}

function score(candidate: Candidate, request: PlacementRequest, policy: SchedulingPolicy): Score {
  const { before, after } = utilisation(candidate.usage, request);
  const overloaded = after > policy.highUtilization;
  let tier: number;
  let load: number;
  if (policy.name === 'power_saving') {
    // Busy-but-not-full nodes first, then the idle ones, then nodes pushed over the line.
    tier = overloaded ? 2 : before < policy.lowUtilization ? 1 : 0;
    load = overloaded ? after : -after;
  } else {
    tier = overloaded ? 1 : 0;
    load = after;
  }
  const described = candidate.node.metadata?.labels?.[NODE_AGENT_LABEL] === undefined ? 0 : 1;
  const preference =
    preferredAffinityScore(candidate.node, request.affinity?.nodeAffinity) -
    100 * untoleratedSoftTaints(candidate.node, request.tolerations ?? []) +
    described;
  return { name: candidate.name, tier, preference, load };
}

/** Node names, best first. Ties are broken by name so the answer is deterministic. */
export function rankCandidates(
  candidates: readonly Candidate[],
  request: PlacementRequest,
  policy: SchedulingPolicy,
): string[] {
  return candidates
    .map((c) => score(c, request, policy))
    .sort(
      (a, b) =>
        a.tier - b.tier || b.preference - a.preference || a.load - b.load || a.name.localeCompare(b.name),
    )
    .map((s) => s.name);
}

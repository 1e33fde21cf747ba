// How a pod's placement constraints meet a node: node selector, node affinity
// (required and preferred), taints and tolerations. Semantics follow the
// kube-scheduler's NodeAffinity and TaintToleration plugins.
import type { NodeAffinity, NodeShape, RequirementShape, Taint, Toleration } from './kube-shapes.ts';

interface TermShape {
  readonly matchExpressions?: readonly RequirementShape[] | undefined;
  readonly matchFields?: readonly RequirementShape[] | undefined;
}

type Labels = Readonly<Record<string, string>>;

/** One label requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against a label's value (undefined when absent). */
export function requirementMatches(req: RequirementShape, value: string | undefined): boolean {
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      return value === undefined || !values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
    case 'Lt': {
      const bound = Number(values[0]);
      const actual = Number(value);
      if (value === undefined || values.length !== 1 || !Number.isInteger(bound) || !Number.isInteger(actual)) {
        return false;
      }
      return req.operator === 'Gt' ? actual > bound : actual < bound;
    }
    default:
      return false;
  }
}

/** A node selector term: every expression and every field requirement holds (an empty term matches nothing). */
export function termMatches(term: TermShape, node: NodeShape): boolean {
  const expressions = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (expressions.length === 0 && fields.length === 0) return false;
  const labels: Labels = node.metadata?.labels ?? {};
  const fieldValues: Labels = { 'metadata.name': node.metadata?.name ?? '' };
  return (
    expressions.every((req) => requirementMatches(req, labels[req.key])) &&
    fields.every((req) => requirementMatches(req, fieldValues[req.key]))
  );
}

/** `nodeSelector` and required node affinity (terms are ORed) both hold. */
export function matchesNodeSelectorAndAffinity(
  node: NodeShape,
  nodeSelector: Labels | undefined,
  nodeAffinity: NodeAffinity | undefined,
): boolean {
  const labels: Labels = node.metadata?.labels ?? {};
  for (const [key, value] of Object.entries(nodeSelector ?? {})) {
    if (labels[key] !== value) return false;
  }
  const required = nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required === undefined) return true;
  return required.nodeSelectorTerms.some((term) => termMatches(term, node));
}

/** Sum of the weights of the preferred node affinity terms this node matches. */
export function preferredAffinityScore(node: NodeShape, nodeAffinity: NodeAffinity | undefined): number {
  let score = 0;
  for (const pref of nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []) {
    if (termMatches(pref.preference, node)) score += pref.weight;
  }
  return score;
}

export function tolerates(toleration: Toleration, taint: Taint): boolean {
  if (toleration.effect !== undefined && toleration.effect !== '' && toleration.effect !== taint.effect) return false;
  const operator = toleration.operator ?? 'Equal';
  if (toleration.key === undefined || toleration.key === '') return operator === 'Exists';
  if (toleration.key !== taint.key) return false;
  if (operator === 'Exists') return true;
  return (toleration.value ?? '') === (taint.value ?? '');
}

function untolerated(node: NodeShape, tolerations: readonly Toleration[], effects: readonly string[]): Taint[] {
  return (node.spec?.taints ?? []).filter(
    (taint) => effects.includes(taint.effect) && !tolerations.some((t) => tolerates(t, taint)),
  );
}

/** The first NoSchedule/NoExecute taint the pod does not tolerate, if any. */
export function firstUntoleratedTaint(node: NodeShape, tolerations: readonly Toleration[]): Taint | undefined {
  return untolerated(node, tolerations, ['NoSchedule', 'NoExecute'])[0];
}

/** How many PreferNoSchedule taints the pod does not tolerate (fewer is better). */
export function untoleratedSoftTaints(node: NodeShape, tolerations: readonly Toleration[]): number {
  return untolerated(node, tolerations, ['PreferNoSchedule']).length;
}

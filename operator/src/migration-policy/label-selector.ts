// A metav1.LabelSelector against a set of labels (matchLabels and matchExpressions
// In/NotIn/Exists/DoesNotExist, all ANDed), reusing the scheduler's requirement
// matcher so that KeyVirt has one reading of label requirements.
import type { LabelSelector } from '@keyvirt/crds';
import { requirementMatches } from '../scheduler/node-matching.ts';

type Labels = Readonly<Record<string, string>>;

/** Every matchLabels entry and every matchExpression holds; an absent or empty selector matches everything. */
export function labelSelectorMatches(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (selector === undefined) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementMatches(req, Object.hasOwn(labels, req.key) ? labels[req.key] : undefined));
}

/** How many label requirements a selector states (matchLabels entries plus matchExpressions): its specificity. */
export function selectorRequirementCount(selector: LabelSelector | undefined): number {
  if (selector === undefined) return 0;
  return Object.keys(selector.matchLabels ?? {}).length + (selector.matchExpressions ?? []).length;
}

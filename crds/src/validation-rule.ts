// One validation rule, written once, enforced twice: by zod (superRefine, with the
// exact field path) and by the API server (the same text as the message of an
// `x-kubernetes-validations` CEL rule on the schema node that carries it).
import type { z } from 'zod';

/** A path below the node that carries a rule: property names and array indexes. */
export type RelativePath = readonly (string | number)[];

export interface ValidationRule<T> {
  /** The CEL expression the API server evaluates with `self` bound to this node. */
  readonly cel: string;
  /** The text both the API server and zod report. */
  readonly message: string;
  /** A static JSONPath (relative to this node) the API server reports, e.g. `.size`. */
  readonly fieldPath?: string;
  /** The API server's error reason; FieldValueInvalid when absent. */
  readonly reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
  /**
   * Where the value breaks the rule (relative paths; empty when it holds). A rule that
   * compares with the stored object (`oldSelf`) has no zod twin and returns [].
   */
  readonly violations: (value: T) => readonly RelativePath[];
  /** True for rules on updates only (`oldSelf`): zod cannot see the old object. */
  readonly transition?: boolean;
}

/** The CRD form of a rule, as it appears under `x-kubernetes-validations`. */
export interface CelValidation {
  readonly rule: string;
  readonly message: string;
  readonly fieldPath?: string;
  readonly reason?: string;
}

/** Attaches the rules to a schema: zod refinements plus their CEL twins. */
export function withRules<S extends z.ZodType>(schema: S, rules: readonly ValidationRule<z.output<S>>[]): S {
  const refined = schema.superRefine((value, ctx) => {
    for (const rule of rules) {
      for (const path of rule.violations(value)) {
        ctx.addIssue({ code: 'custom', message: rule.message, path: [...path] });
      }
    }
  });
  return refined.meta({ 'x-kubernetes-validations': rules.map(toCel) });
}

function toCel<T>(rule: ValidationRule<T>): CelValidation {
  return {
    rule: rule.cel,
    message: rule.message,
    ...(rule.fieldPath === undefined ? {} : { fieldPath: rule.fieldPath }),
    ...(rule.reason === undefined ? {} : { reason: rule.reason }),
  };
}

/** Paths of the items after the first whose key repeats an earlier item's key. */
export function duplicatePaths<T>(items: readonly T[], key: (item: T) => string | number | undefined, field: string): RelativePath[] {
  const seen = new Set<string | number>();
  const paths: RelativePath[] = [];
  items.forEach((item, index) => {
    const k = key(item);
    if (k === undefined) return;
    if (seen.has(k)) paths.push([index, field]);
    seen.add(k);
  });
  return paths;
}

/** [[]] when the condition is broken (the rule applies to the whole node), else []. */
export function unless(holds: boolean, path: RelativePath = []): RelativePath[] {
  return holds ? [] : [path];
}

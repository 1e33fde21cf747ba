// Field shapes shared by several kinds: Kubernetes integers, names, byte sizes,
// object metadata, metav1.Condition, and the pod placement fields.
import { z } from 'zod';
import { BYTE_SIZE_PATTERN, quantityAtLeast, quantityAtMost } from './quantity.ts';
import { withRules } from './validation-rule.ts';

/** A Kubernetes int32 with explicit bounds. */
export function int32(min: number, max: number): z.ZodNumber {
  return z.int().min(min).max(max).meta({ format: 'int32' });
}

/** A Kubernetes int64 with a lower bound and an optional upper bound. */
export function int64(min: number, max?: number): z.ZodNumber {
  const base = z.int().min(min);
  return (max === undefined ? base : base.max(max)).meta({ format: 'int64' });
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters. */
export function dnsLabel(what: string): z.ZodString {
  return z
    .string()
    .min(1, { error: `${what} must not be empty` })
    .max(63, { error: `${what} must be at most 63 characters` })
    .regex(DNS_LABEL, { error: `${what} must consist of lower-case letters, digits and '-', and start and end with a letter or digit` });
}

/** A DNS-1123 subdomain, as Kubernetes object names are. */
export function dnsSubdomain(what: string): z.ZodString {
  return z
    .string()
    .min(1, { error: `${what} must not be empty` })
    .max(253, { error: `${what} must be at most 253 characters` })
    .regex(DNS_SUBDOMAIN, { error: `${what} must consist of lower-case letters, digits, '-' and '.', and start and end with a letter or digit` });
}

/** A byte size such as "2Gi" with inclusive bounds, checked by pattern and CEL quantity(). */
export function byteSize(what: string, min: string, max: string): z.ZodString {
  const base = z.string().max(32, { error: `${what} must be at most 32 characters` }).regex(new RegExp(BYTE_SIZE_PATTERN), { error: `${what} must be a size such as 512Mi, 2Gi or 20G` });
  const atLeast = {
    cel: `!isQuantity(self) || quantity(self).compareTo(quantity('${min}')) >= 0`,
    message: `${what} must be at least ${min}`,
    violations: (v: string) => (quantityAtLeast(v, min) ? [] : [[]]),
  };
  // The pattern already rules out negative sizes: a lower bound of 0 needs no rule.
  return withRules(base, [
    ...(min === '0' ? [] : [atLeast]),
    {
      cel: `!isQuantity(self) || quantity(self).compareTo(quantity('${max}')) <= 0`,
      message: `${what} must be at most ${max}`,
      violations: (v) => (quantityAtMost(v, max) ? [] : [[]]),
    },
  ]);
}

/** An RFC 3339 timestamp as Kubernetes writes them. */
export const Timestamp = z.iso.datetime({ offset: true }).describe('An RFC 3339 timestamp.');

/** The metadata KeyVirt reads; the API server owns the full ObjectMeta schema. */
export const ObjectMeta = z.looseObject({
  name: dnsSubdomain('metadata.name').describe('The object name, unique within its namespace (or the cluster for cluster-scoped kinds).'),
  namespace: dnsLabel('metadata.namespace').optional().describe('The namespace of a namespaced object.'),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: int64(0).optional(),
  creationTimestamp: Timestamp.optional(),
  deletionTimestamp: Timestamp.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;

export const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;
export type ConditionStatus = (typeof CONDITION_STATUSES)[number];

/** The standard metav1.Condition. */
export const Condition = z
  .object({
    type: z
      .string()
      .max(316)
      .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/)
      .describe('The condition type in CamelCase, e.g. Ready.'),
    status: z.enum(CONDITION_STATUSES).describe('True, False or Unknown.'),
    observedGeneration: int64(0).optional().describe('The .metadata.generation the condition was set from.'),
    lastTransitionTime: Timestamp.describe('When the condition last changed status.'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe('A CamelCase, machine-readable reason for the last transition.'),
    message: z.string().max(32768).describe('A human-readable message about the transition.'),
  })
  .describe('A standard Kubernetes condition (metav1.Condition).');
export type Condition = z.infer<typeof Condition>;

/** A list of conditions keyed by type. */
export function conditions(): z.ZodOptional<z.ZodArray<typeof Condition>> {
  return z
    .array(Condition)
    .max(32)
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
    .optional()
    .describe('The latest observations of the object state, one per condition type.');
}

export const TOLERATION_OPERATORS = ['Exists', 'Equal'] as const;
export const TAINT_EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

/** A core/v1 Toleration, copied onto the launcher pod. */
export const Toleration = z
  .object({
    key: z.string().max(316).optional().describe('The taint key the toleration applies to; empty with operator Exists matches every taint.'),
    operator: z.enum(TOLERATION_OPERATORS).optional().describe('Exists or Equal (the default).'),
    value: z.string().max(63).optional().describe('The taint value the toleration matches (operator Equal).'),
    effect: z.enum(TAINT_EFFECTS).optional().describe('The taint effect to match; empty matches every effect.'),
    tolerationSeconds: int64(0).optional().describe('For NoExecute: how long the pod stays bound after the taint appears.'),
  })
  .describe('A toleration copied onto the launcher pod.');
export type Toleration = z.infer<typeof Toleration>;

const unstructured = (description: string): z.ZodOptional<z.ZodRecord<z.ZodString, z.ZodUnknown>> =>
  z.record(z.string(), z.unknown()).meta({ 'x-kubernetes-preserve-unknown-fields': true }).optional().describe(description);

/** A core/v1 Affinity, copied onto the launcher pod; its terms are checked by the API server when the pod is created. */
export const Affinity = z
  .object({
    nodeAffinity: unstructured('Node affinity of the launcher pod (core/v1 NodeAffinity).'),
    podAffinity: unstructured('Pod affinity of the launcher pod (core/v1 PodAffinity).'),
    podAntiAffinity: unstructured('Pod anti-affinity of the launcher pod (core/v1 PodAntiAffinity).'),
  })
  .describe('Scheduling constraints copied onto the launcher pod (core/v1 Affinity).');
export type Affinity = z.infer<typeof Affinity>;

/** A label selector (metav1.LabelSelector). */
export const LabelSelector = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional().describe('Labels that must all match.'),
    matchExpressions: z
      .array(
        z.object({
          key: z.string().min(1).describe('The label key.'),
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']).describe('In, NotIn, Exists or DoesNotExist.'),
          values: z.array(z.string()).optional().describe('Values for In and NotIn.'),
        }),
      )
      .optional()
      .describe('Label requirements that must all match.'),
  })
  .describe('A label selector; an empty selector matches everything.');
export type LabelSelector = z.infer<typeof LabelSelector>;

/** A string that reports "<what> is required" when absent. */
export function requiredString(what: string): z.ZodString {
  return z.string({ error: (issue) => (issue.input === undefined ? `${what} is required` : `${what} must be a string`) });
}

/** An absolute file system path. */
export function absolutePath(what: string): z.ZodString {
  return requiredString(what)
    .max(4096)
    .regex(/^\//, { error: `${what} must be an absolute path` });
}

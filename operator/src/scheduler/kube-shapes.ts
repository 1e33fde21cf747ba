// The parts of core/v1 Node and Pod the scheduler reads, as plain structural types
// (objects from the informers' caches or from @kubernetes/client-node fit them),
// and zod schemas for the node affinity a VirtualMachine carries unstructured.
import { z } from 'zod';

export const NodeSelectorRequirement = z.object({
  key: z.string(),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
  values: z.array(z.string()).optional(),
});
export type NodeSelectorRequirement = z.infer<typeof NodeSelectorRequirement>;

export const NodeSelectorTerm = z.object({
  matchExpressions: z.array(NodeSelectorRequirement).optional(),
  matchFields: z.array(NodeSelectorRequirement).optional(),
});
export type NodeSelectorTerm = z.infer<typeof NodeSelectorTerm>;

export const NodeAffinity = z.object({
  requiredDuringSchedulingIgnoredDuringExecution: z.object({ nodeSelectorTerms: z.array(NodeSelectorTerm) }).optional(),
  preferredDuringSchedulingIgnoredDuringExecution: z
    .array(z.object({ weight: z.int().min(1).max(100), preference: NodeSelectorTerm }))
    .optional(),
});
export type NodeAffinity = z.infer<typeof NodeAffinity>;

/** core/v1 Affinity with the node part typed; pod (anti-)affinity is passed through untouched. */
export interface Affinity {
  readonly nodeAffinity?: NodeAffinity | undefined;
  readonly podAffinity?: unknown;
  readonly podAntiAffinity?: unknown;
}

export interface Toleration {
  readonly key?: string | undefined;
  readonly operator?: string | undefined;
  readonly value?: string | undefined;
  readonly effect?: string | undefined;
  readonly tolerationSeconds?: number | undefined;
}

export interface Taint {
  readonly key: string;
  readonly value?: string | undefined;
  readonly effect: string;
}

type ResourceList = Readonly<Record<string, string>>;

export interface NodeShape {
  readonly metadata?: { readonly name?: string | undefined; readonly labels?: Readonly<Record<string, string>> | undefined } | undefined;
  readonly spec?: { readonly unschedulable?: boolean | undefined; readonly taints?: readonly Taint[] | undefined } | undefined;
  readonly status?:
    | {
        readonly allocatable?: ResourceList | undefined;
        readonly capacity?: ResourceList | undefined;
        readonly conditions?:
          | readonly { readonly type: string; readonly status: string; readonly reason?: string | undefined }[]
          | undefined;
      }
    | undefined;
}

export interface ContainerShape {
  readonly name?: string | undefined;
  readonly restartPolicy?: string | undefined;
  readonly resources?: { readonly requests?: ResourceList | undefined; readonly limits?: ResourceList | undefined } | undefined;
}

export interface PodShape {
  readonly metadata?: { readonly name?: string | undefined; readonly namespace?: string | undefined } | undefined;
  readonly spec?:
    | {
        readonly nodeName?: string | undefined;
        readonly affinity?: { readonly nodeAffinity?: NodeAffinityShape | undefined } | undefined;
        readonly containers: readonly ContainerShape[];
        readonly initContainers?: readonly ContainerShape[] | undefined;
        readonly overhead?: ResourceList | undefined;
        readonly resources?: { readonly requests?: ResourceList | undefined } | undefined;
      }
    | undefined;
  readonly status?: { readonly phase?: string | undefined } | undefined;
}

/** Node affinity as a pod carries it (operators as plain strings). */
export interface NodeAffinityShape {
  readonly requiredDuringSchedulingIgnoredDuringExecution?:
    | {
        readonly nodeSelectorTerms: readonly {
          readonly matchExpressions?: readonly RequirementShape[] | undefined;
          readonly matchFields?: readonly RequirementShape[] | undefined;
        }[];
      }
    | undefined;
}

export interface RequirementShape {
  readonly key: string;
  readonly operator: string;
  readonly values?: readonly string[] | undefined;
}

// zod schemas for the core/v1 objects the operator caches or reads: only the fields it
// uses, parsed at the edge like every other answer from the API server.
import { z } from 'zod';
import { ownerReferenceSchema } from './owner-mapping.ts';

const resourceList = z.record(z.string(), z.union([z.string(), z.number()]).transform((v) => String(v)));

export const objectMetaSchema = z.object({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  deletionGracePeriodSeconds: z.number().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
  ownerReferences: z.array(ownerReferenceSchema).optional(),
});

const requirementSchema = z.object({
  key: z.string(),
  operator: z.string(),
  values: z.array(z.string()).optional(),
});

const containerSchema = z.object({
  name: z.string(),
  restartPolicy: z.string().optional(),
  resources: z.object({ requests: resourceList.optional(), limits: resourceList.optional() }).optional(),
});

const containerStatusSchema = z.object({
  name: z.string(),
  ready: z.boolean().optional(),
  restartCount: z.number().optional(),
  state: z
    .object({
      waiting: z.object({ reason: z.string().optional(), message: z.string().optional() }).optional(),
      running: z.object({ startedAt: z.string().optional() }).optional(),
      terminated: z
        .object({
          exitCode: z.number(),
          reason: z.string().optional(),
          message: z.string().optional(),
          finishedAt: z.string().optional(),
        })
        .optional(),
    })
    .optional(),
});

export const podSchema = z.object({
  metadata: objectMetaSchema,
  spec: z.object({
    nodeName: z.string().optional(),
    affinity: z
      .object({
        nodeAffinity: z
          .object({
            requiredDuringSchedulingIgnoredDuringExecution: z
              .object({
                nodeSelectorTerms: z.array(
                  z.object({ matchExpressions: z.array(requirementSchema).optional(), matchFields: z.array(requirementSchema).optional() }),
                ),
              })
              .optional(),
          })
          .optional(),
      })
      .optional(),
    containers: z.array(containerSchema),
    initContainers: z.array(containerSchema).optional(),
    overhead: resourceList.optional(),
  }),
  status: z
    .object({
      phase: z.string().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      podIP: z.string().optional(),
      startTime: z.string().optional(),
      conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string().optional(), message: z.string().optional() })).optional(),
      containerStatuses: z.array(containerStatusSchema).optional(),
    })
    .optional(),
});
export type Pod = z.infer<typeof podSchema>;

export const nodeSchema = z.object({
  metadata: objectMetaSchema,
  spec: z
    .object({
      unschedulable: z.boolean().optional(),
      taints: z.array(z.object({ key: z.string(), value: z.string().optional(), effect: z.string() })).optional(),
    })
    .optional(),
  status: z
    .object({
      allocatable: resourceList.optional(),
      capacity: resourceList.optional(),
      conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string().optional() })).optional(),
    })
    .optional(),
});
export type Node = z.infer<typeof nodeSchema>;

export const secretSchema = z.object({
  metadata: objectMetaSchema,
  data: z.record(z.string(), z.string()).optional(),
});
export type Secret = z.infer<typeof secretSchema>;

export const persistentVolumeClaimSchema = z.object({
  metadata: objectMetaSchema,
  spec: z.object({ accessModes: z.array(z.string()).optional(), volumeName: z.string().optional() }).optional(),
  status: z.object({ phase: z.string().optional(), accessModes: z.array(z.string()).optional() }).optional(),
});
export type PersistentVolumeClaim = z.infer<typeof persistentVolumeClaimSchema>;

const intOrString = z.union([z.number().int(), z.string()]);

export const podDisruptionBudgetSchema = z.object({
  metadata: objectMetaSchema,
  spec: z
    .object({
      minAvailable: intOrString.optional(),
      maxUnavailable: intOrString.optional(),
      selector: z.object({ matchLabels: z.record(z.string(), z.string()).optional() }).optional(),
      unhealthyPodEvictionPolicy: z.string().optional(),
    })
    .optional(),
  status: z
    .object({
      disruptionsAllowed: z.number().optional(),
      currentHealthy: z.number().optional(),
      desiredHealthy: z.number().optional(),
      expectedPods: z.number().optional(),
    })
    .optional(),
});
export type PodDisruptionBudget = z.infer<typeof podDisruptionBudgetSchema>;

/** A namespace: only its labels matter (MigrationPolicy namespace selectors). */
export const namespaceSchema = z.object({ metadata: objectMetaSchema });
export type Namespace = z.infer<typeof namespaceSchema>;

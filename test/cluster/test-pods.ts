// Pods and namespaces for the cluster suites: busybox pods (the node simulator
// runs busybox applets for the `busybox` image), phase and IP polling.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { eventually } from '../support/cluster.ts';
import type { TestCluster } from '../support/cluster.ts';

const podSchema = z.object({
  metadata: z.object({ name: z.string(), uid: z.string() }),
  spec: z.object({ nodeName: z.string().optional() }),
  status: z.object({
    phase: z.string().optional(),
    podIP: z.string().optional(),
    containerStatuses: z.array(z.object({
      name: z.string(),
      restartCount: z.number(),
      state: z.object({ terminated: z.object({ exitCode: z.number() }).optional() }).optional(),
    })).optional(),
  }).optional(),
});
export type PodView = z.infer<typeof podSchema>;

export interface PodOptions {
  readonly name: string;
  readonly script: string;
  readonly nodeName?: string;
  readonly restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  readonly extraSpec?: Record<string, unknown>;
  readonly container?: Record<string, unknown>;
  readonly metadata?: Record<string, unknown>;
}

export function busyboxPod(namespace: string, options: PodOptions): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: options.name, namespace, ...options.metadata },
    spec: {
      nodeName: options.nodeName,
      restartPolicy: options.restartPolicy ?? 'Never',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 5,
      containers: [{ name: 'main', image: 'busybox:1.36', command: ['sh', '-c', options.script], ...options.container }],
      ...options.extraSpec,
    },
  };
}

/** Creates a namespace (waiting for its default service account) and returns its name. */
export async function createNamespace(cluster: TestCluster, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  cluster.kubectl(['create', 'namespace', name]);
  await eventually(`service account default in ${name}`, () => {
    cluster.kubectl(['get', 'serviceaccount', 'default', '-n', name]);
    return true;
  }, 60_000);
  return name;
}

export function deleteNamespace(cluster: TestCluster, name: string): void {
  cluster.kubectl(['delete', 'namespace', name, '--ignore-not-found', '--wait=false']);
}

export function apply(cluster: TestCluster, object: Record<string, unknown>): void {
  cluster.kubectl(['apply', '-f', '-'], JSON.stringify(object));
}

export function getPod(cluster: TestCluster, namespace: string, name: string): PodView | undefined {
  try {
    return podSchema.parse(JSON.parse(cluster.kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json'])));
  } catch {
    return undefined;
  }
}

export function waitPodPhase(cluster: TestCluster, namespace: string, name: string, phases: readonly string[], timeoutMs = 120_000): Promise<PodView> {
  return eventually(`pod ${namespace}/${name} in ${phases.join('/')}`, () => {
    const pod = getPod(cluster, namespace, name);
    return pod !== undefined && phases.includes(pod.status?.phase ?? '') ? pod : undefined;
  }, timeoutMs);
}

export function waitPodGone(cluster: TestCluster, namespace: string, name: string, timeoutMs = 120_000): Promise<true> {
  return eventually(`pod ${namespace}/${name} deleted`, () => {
    const out = cluster.kubectl(['get', 'pod', name, '-n', namespace, '--ignore-not-found', '-o', 'name']);
    return out.trim() === '' ? true : undefined;
  }, timeoutMs);
}

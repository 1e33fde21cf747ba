// Which launchers run on this node and how to reach them (ADR 0069): the launcher pods
// the API server places on the node (label selector of every launcher pod, field
// selector spec.nodeName), each named by the API server's word — namespace, VM name
// and VM uid from the pod's labels, never from what a launcher answers. Migration
// target pods are left out: the source launcher reports the VM and its migration.
import { z } from 'zod';
import { LABEL_MIGRATION_TARGET, LABEL_VM, LABEL_VM_UID, LAUNCHER_POD_SELECTOR } from '../vm/names.ts';

/** The launcher API's port name in the launcher pod (operator/src/vm/launcher-pod.ts). */
export const LAUNCHER_PORT_NAME = 'launcher-api';
const DEFAULT_LAUNCHER_PORT = 8443;

/** The pod list call the agent needs. */
export interface LauncherPodApi {
  listPods: (fieldSelector: string, labelSelector: string) => Promise<unknown>;
}

const LauncherPodSchema = z.object({
  metadata: z.object({
    namespace: z.string(),
    name: z.string(),
    labels: z.record(z.string(), z.string()).default({}),
  }),
  spec: z.object({
    nodeName: z.string().optional(),
    containers: z
      .array(z.object({ ports: z.array(z.object({ name: z.string().optional(), containerPort: z.int() })).optional() }))
      .default([]),
  }),
  status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).default({}),
});
const PodListSchema = z.object({ items: z.array(z.unknown()) });

export interface LauncherTarget {
  readonly namespace: string;
  readonly name: string;
  readonly vmUid: string;
  readonly pod: string;
  readonly url: string;
}

/** Launcher pods of `node` that run and have an address, as scrape targets; pods of another shape are skipped. */
export function launcherTargets(list: unknown, node: string): LauncherTarget[] {
  const parsed = PodListSchema.safeParse(list);
  if (!parsed.success) return [];
  const out: LauncherTarget[] = [];
  for (const item of parsed.data.items) {
    const pod = LauncherPodSchema.safeParse(item);
    if (!pod.success) continue;
    const { metadata, spec, status } = pod.data;
    const name = metadata.labels[LABEL_VM];
    const vmUid = metadata.labels[LABEL_VM_UID];
    if (name === undefined || vmUid === undefined || metadata.labels[LABEL_MIGRATION_TARGET] !== undefined) continue;
    if (spec.nodeName !== node || status.phase !== 'Running' || status.podIP === undefined) continue;
    const port = spec.containers.flatMap((c) => c.ports ?? []).find((p) => p.name === LAUNCHER_PORT_NAME)?.containerPort ?? DEFAULT_LAUNCHER_PORT;
    const host = status.podIP.includes(':') ? `[${status.podIP}]` : status.podIP;
    out.push({ namespace: metadata.namespace, name, vmUid, pod: metadata.name, url: `http://${host}:${port}/v1/metrics` });
  }
  return out;
}

/** The launcher targets on `node` from the API server. */
export async function listLauncherTargets(api: LauncherPodApi, node: string): Promise<LauncherTarget[]> {
  return launcherTargets(await api.listPods(`spec.nodeName=${node}`, LAUNCHER_POD_SELECTOR), node);
}

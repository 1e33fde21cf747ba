// The launcher eviction webhook (ADR 0121): the kube-apiserver asks it about every
// eviction of a pod named `launcher-*` (the ValidatingWebhookConfiguration's match
// condition), and it refuses, with 429 Too Many Requests, the eviction of a Running
// launcher pod of a LiveMigrate VM. `kubectl drain` (and any client of the eviction API
// that honours disruption budgets) waits on a 429 and tries again; meanwhile the
// evacuation controller moves the VM away by live migration, and the migration deletes
// the source pod itself (DELETE, which no eviction check stops). Pending, finished and
// terminating pods hold no guest and go, as the eviction API lets them go past any
// budget. The pod's labels are KeyVirt's alone (ADR 0114): nobody else can make a pod of
// theirs unevictable with them.
//
// It reads the pod by a list (name and launcher selector): the operator has no `get` on
// pods (ADR 0107). It acts on nothing, so a dry-run eviction gets the same answer.
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { KubeClient } from '../runtime/kube-client.ts';
import { podSchema, type Pod } from '../runtime/core-schemas.ts';
import { coreTypes, collectionPath } from '../runtime/resource.ts';
import { LABEL_EVICTION_STRATEGY, LABEL_VM, LAUNCHER_POD_SELECTOR } from '../vm/names.ts';

/** The part of an AdmissionReview (admission.k8s.io/v1) this webhook reads. */
export const evictionReviewSchema = z.object({
  apiVersion: z.literal('admission.k8s.io/v1', { error: 'apiVersion must be admission.k8s.io/v1' }),
  kind: z.literal('AdmissionReview', { error: 'kind must be AdmissionReview' }),
  request: z.object({
    uid: z.string().min(1).max(128),
    resource: z.object({ group: z.string(), version: z.string(), resource: z.string() }),
    subResource: z.string().optional(),
    operation: z.string(),
    name: z.string().max(253),
    namespace: z.string().max(63),
  }),
});
export type EvictionReview = z.infer<typeof evictionReviewSchema>;

export type EvictionVerdict = { allowed: true; why: string } | { allowed: false; message: string };

/** Whether an eviction of `pod` (undefined: no such launcher pod) may go ahead. */
export function evictionVerdict(pod: Pod | undefined, namespace: string, name: string): EvictionVerdict {
  if (pod === undefined) return { allowed: true, why: 'not a launcher pod' };
  const vm = pod.metadata.labels?.[LABEL_VM];
  if (vm === undefined) return { allowed: true, why: 'not a launcher pod' };
  if (pod.metadata.deletionTimestamp !== undefined) return { allowed: true, why: 'terminating' };
  const phase = pod.status?.phase ?? 'Pending';
  if (phase !== 'Running' && phase !== 'Unknown') return { allowed: true, why: `phase ${phase}: no guest runs in it` };
  if (pod.metadata.labels?.[LABEL_EVICTION_STRATEGY] !== 'LiveMigrate') return { allowed: true, why: 'its VM is not LiveMigrate' };
  return {
    allowed: false,
    message:
      `pod ${namespace}/${name} runs VirtualMachine ${vm}, whose evictionStrategy is LiveMigrate: it is not evicted; ` +
      `it leaves a cordoned or keyvirt.io/drain-tainted node by live migration, which removes this pod`,
  };
}

/** The AdmissionReview answer to `review`. */
export function reviewAnswer(uid: string, verdict: EvictionVerdict): unknown {
  const response = verdict.allowed
    ? { uid, allowed: true }
    : { uid, allowed: false, status: { status: 'Failure', code: 429, reason: 'TooManyRequests', message: verdict.message } };
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

const podListSchema = z.object({ items: z.array(podSchema) });

/** The API server's answer to the pod list did not parse: the webhook's fault to report (500), not the review's (400). */
export class PodListError extends Error {
  override name = 'PodListError';
}

/** The launcher pod `namespace/name`, if there is one. */
export async function readLauncherPod(client: Pick<KubeClient, 'get'>, namespace: string, name: string, signal?: AbortSignal): Promise<Pod | undefined> {
  const query = new URLSearchParams({ fieldSelector: `metadata.name=${name}`, labelSelector: LAUNCHER_POD_SELECTOR });
  const list = podListSchema.safeParse(await client.get(`${collectionPath(coreTypes.pod, namespace)}?${query.toString()}`, signal));
  if (!list.success) throw new PodListError(`the pod list for ${namespace}/${name} did not parse: ${list.error.issues[0]?.message ?? 'unknown'}`, { cause: list.error });
  return list.data.items.find((p) => p.metadata.name === name);
}

/**
 * The whole review: the request parsed (a `SyntaxError` or `ZodError` for a body that is
 * not one), the pod read (a `PodListError` for an answer that is not a pod list), the verdict. A request about anything but the eviction of a
 * pod is allowed: the webhook's configuration never sends one.
 */
export async function reviewEviction(client: Pick<KubeClient, 'get'>, body: string, signal?: AbortSignal): Promise<{ answer: unknown; review: EvictionReview; verdict: EvictionVerdict }> {
  const review = evictionReviewSchema.parse(JSON.parse(body));
  const r = review.request;
  const isPodEviction = r.resource.group === '' && r.resource.resource === 'pods' && r.subResource === 'eviction' && r.operation === 'CREATE';
  const verdict: EvictionVerdict =
    !isPodEviction || r.name === '' || r.namespace === '' ? { allowed: true, why: 'not the eviction of a pod' } : evictionVerdict(await readLauncherPod(client, r.namespace, r.name, signal), r.namespace, r.name);
  return { answer: reviewAnswer(r.uid, verdict), review, verdict };
}

/** The path prefix the webhook is served under; the rest of the path is its token. */
export const EVICTION_WEBHOOK_PATH = '/admission/launcher-eviction/';

/**
 * Whether `url` is the webhook's path with the right token (constant time in the token).
 * The token, in the path of the webhook's configuration that only cluster administrators
 * read, is what tells the kube-apiserver apart from any other client of the port: nobody
 * else can make the operator read pods, or learn which pods are running launchers.
 */
export function webhookTokenMatches(url: string | undefined, token: string): boolean {
  if (url === undefined || !url.startsWith(EVICTION_WEBHOOK_PATH) || token === '') return false;
  const query = url.indexOf('?');
  const given = Buffer.from(url.slice(EVICTION_WEBHOOK_PATH.length, query < 0 ? undefined : query));
  const wanted = Buffer.from(token);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

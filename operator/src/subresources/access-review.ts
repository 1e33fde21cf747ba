// The second authorisation of every subresource request (ADR 0066): a
// SubjectAccessReview for the user the kube-apiserver authenticated, on
// `virtualmachines/<subresource>` of group subresources.keyvirt.io. The review body and
// the reading of its answer are pure; `review` sends it.
import { z } from 'zod';
import type { KubeClient } from '../runtime/kube-client.ts';
import type { RemoteUser } from './front-proxy.ts';
import { SUBRESOURCE_GROUP, SUBRESOURCE_VERSION, type SubresourceName } from './request-routing.ts';

export interface AccessQuestion {
  readonly user: RemoteUser;
  readonly verb: 'get' | 'update' | 'create';
  readonly namespace: string;
  readonly name: string;
  readonly subresource: SubresourceName | 'upload';
  /** virtualmachines unless said. */
  readonly resource?: 'virtualmachines' | 'virtualmachineimages' | undefined;
}

export type AccessAnswer = { allowed: true } | { allowed: false; message: string };

export function subjectAccessReview(q: AccessQuestion): Record<string, unknown> {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: q.user.username,
      ...(q.user.uid === undefined ? {} : { uid: q.user.uid }),
      groups: [...q.user.groups],
      extra: Object.fromEntries(Object.entries(q.user.extra).map(([k, v]) => [k, [...v]])),
      resourceAttributes: {
        group: SUBRESOURCE_GROUP,
        version: SUBRESOURCE_VERSION,
        resource: q.resource ?? 'virtualmachines',
        subresource: q.subresource,
        namespace: q.namespace,
        name: q.name,
        verb: q.verb,
      },
    },
  };
}

const reviewAnswer = z.object({
  status: z.object({ allowed: z.boolean(), denied: z.boolean().optional(), reason: z.string().optional(), evaluationError: z.string().optional() }).optional(),
});

/** Allowed only on an explicit `allowed: true`; the message names user, verb, subresource and namespace. */
export function readAccessAnswer(q: AccessQuestion, answer: unknown): AccessAnswer {
  const parsed = reviewAnswer.safeParse(answer);
  if (parsed.success && parsed.data.status?.allowed === true && parsed.data.status.denied !== true) return { allowed: true };
  const why = parsed.success ? parsed.data.status?.reason : undefined;
  return {
    allowed: false,
    message:
      `user ${JSON.stringify(q.user.username)} cannot ${q.verb} resource "${q.resource ?? 'virtualmachines'}/${q.subresource}" in API group "${SUBRESOURCE_GROUP}" ` +
      `in the namespace ${JSON.stringify(q.namespace)}${why === undefined || why === '' ? '' : `: ${why}`}`,
  };
}

export async function review(client: Pick<KubeClient, 'create'>, q: AccessQuestion, signal?: AbortSignal): Promise<AccessAnswer> {
  const answer = await client.create('/apis/authorization.k8s.io/v1/subjectaccessreviews', subjectAccessReview(q), signal);
  return readAccessAnswer(q, answer);
}

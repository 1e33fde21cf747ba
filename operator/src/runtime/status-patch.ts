// Status writes with optimistic concurrency (ADR 0102). A status is replaced whole by a
// JSON patch on the status subresource that also names the resourceVersion the status
// was computed from: the API server applies it only if the object is still at that
// version, and answers 409 Conflict otherwise. So a write computed from a stale view —
// an operator that lost its lease while a reconcile was in flight, or a cache behind a
// write of someone else — fails and is retried from fresh state instead of overwriting
// newer status.
import { z } from 'zod';
import { sameJson } from './canonical-json.ts';

export interface JsonPatchOp {
  op: 'add' | 'replace';
  path: string;
  value: unknown;
}

/** The patch replacing `status`, valid only while the object is at `resourceVersion`. */
export function guardedStatusPatch(status: unknown, resourceVersion: string | undefined): JsonPatchOp[] {
  const replace: JsonPatchOp = { op: 'add', path: '/status', value: status };
  return resourceVersion === undefined ? [replace] : [replace, { op: 'replace', path: '/metadata/resourceVersion', value: resourceVersion }];
}

const answerSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }) });

/** The resourceVersion of the object the API server answered a write with. */
export function resourceVersionOf(answer: unknown): string | undefined {
  const parsed = answerSchema.safeParse(answer);
  return parsed.success ? parsed.data.metadata.resourceVersion : undefined;
}

/** A status this operator wrote, and the object's resourceVersion after that write. */
export interface WrittenStatus<S> {
  readonly status: S;
  readonly resourceVersion: string | undefined;
}

/**
 * What a status write is computed from and guarded by: the operator's own last write
 * while the cache has not shown it yet (its answer's version is newer than the cache's),
 * otherwise the cached object. `written` is returned undefined once the cache caught up.
 */
export function freshestStatus<S>(
  cached: { status: S | undefined; resourceVersion: string | undefined },
  written: WrittenStatus<S> | undefined,
  same: (a: S | undefined, b: S | undefined) => boolean,
): { status: S | undefined; resourceVersion: string | undefined; written: WrittenStatus<S> | undefined } {
  if (written === undefined || same(written.status, cached.status)) return { ...cached, written: undefined };
  return { status: written.status, resourceVersion: written.resourceVersion ?? cached.resourceVersion, written };
}

/** Two statuses say the same whatever the order of their keys (an absent status is an empty one). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return sameJson(a ?? {}, b ?? {});
}

// For unit tests of status writers: one object's status subresource with the API
// server's optimistic concurrency. Every write bumps resourceVersion; a JSON patch
// naming a resourceVersion the object has moved past gets 409 Conflict.
import { KubeApiError } from './kube-client.ts';
import type { JsonPatchOp } from './status-patch.ts';

export abstract class StatusSubresourceFake<S, O> {
  resourceVersion: number;
  status: S | undefined;
  /** The resourceVersion each write named (undefined: an unguarded write). */
  readonly preconditions: (string | undefined)[] = [];

  constructor(resourceVersion: number) {
    this.resourceVersion = resourceVersion;
  }

  patch(path: string, body: unknown): Promise<unknown> {
    const ops = body as JsonPatchOp[];
    const wanted = ops.find((o) => o.path === '/metadata/resourceVersion')?.value as string | undefined;
    this.preconditions.push(wanted);
    if (wanted !== undefined && wanted !== String(this.resourceVersion)) {
      return Promise.reject(new KubeApiError(409, 'Conflict', 'the object has been modified', { method: 'PATCH', path }));
    }
    this.status = ops.find((o) => o.path === '/status')?.value as S;
    this.resourceVersion++;
    return Promise.resolve({ metadata: { resourceVersion: String(this.resourceVersion) } });
  }

  /** The object as an informer cache would hold it right now. */
  abstract cached(): O;
}

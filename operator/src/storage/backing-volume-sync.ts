// Creates the backing volume a plan asks for and reports whether it is usable:
// the PersistentVolume and claim exist, the claim is Bound (or, for storageClass
// domains, the StorageClass exists).
import { z } from 'zod';
import { isAlreadyExists, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import type { BackingVolumePlan } from './backing-volume.ts';
import type { BackingState } from './domain-status.ts';
import { persistentVolumeType, storageClassType } from './names.ts';

const ClaimView = z.object({
  metadata: z.object({ name: z.string(), deletionTimestamp: z.string().optional() }),
  status: z.object({ phase: z.string().optional() }).optional(),
});

type Client = Pick<KubeClient, 'get' | 'create' | 'delete'>;

async function exists(client: Client, path: string, signal: AbortSignal): Promise<unknown> {
  try {
    return await client.get(path, signal);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Creates the object at `path` unless it exists (AlreadyExists from a race is fine). */
export async function createIfMissing(client: Client, collection: string, path: string, body: unknown, signal: AbortSignal): Promise<void> {
  if ((await exists(client, path, signal)) !== undefined) return;
  try {
    await client.create(collection, body, signal);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
}

function nameOf(obj: Record<string, unknown>): string {
  const meta = z.object({ name: z.string(), namespace: z.string().optional() }).parse(obj.metadata);
  return meta.name;
}

/** Ensures the plan's objects exist and says whether jobs can mount the domain yet. */
export async function syncBackingVolume(
  client: Client,
  plan: BackingVolumePlan,
  storageClassName: string | undefined,
  signal: AbortSignal,
): Promise<BackingState> {
  if (plan.persistentVolume !== undefined) {
    const name = nameOf(plan.persistentVolume);
    await createIfMissing(client, collectionPath(persistentVolumeType), objectPath(persistentVolumeType, { name }), plan.persistentVolume, signal);
  }
  if (plan.claim !== undefined && plan.claimRef !== undefined) {
    const ref = plan.claimRef;
    await createIfMissing(client, collectionPath(coreTypes.persistentVolumeClaim, ref.namespace), objectPath(coreTypes.persistentVolumeClaim, ref), plan.claim, signal);
  }
  if (plan.claimRef === undefined) {
    if (storageClassName === undefined) return { state: 'ready' };
    const sc = await exists(client, objectPath(storageClassType, { name: storageClassName }), signal);
    return sc === undefined
      ? { state: 'error', reason: 'StorageClassNotFound', message: `StorageClass ${storageClassName} does not exist` }
      : { state: 'ready' };
  }
  const ref = plan.claimRef;
  const raw = await exists(client, objectPath(coreTypes.persistentVolumeClaim, ref), signal);
  const claimName = `PersistentVolumeClaim ${ref.namespace}/${ref.name}`;
  if (raw === undefined) {
    return plan.claim === undefined
      ? { state: 'error', reason: 'ClaimNotFound', message: `${claimName} does not exist` }
      : { state: 'waiting', reason: 'ClaimCreating', message: `creating ${claimName}` };
  }
  const claim = ClaimView.parse(raw);
  const phase = claim.status?.phase ?? 'Pending';
  if (phase === 'Lost') return { state: 'error', reason: 'ClaimLost', message: `${claimName} lost its volume` };
  if (phase !== 'Bound') return { state: 'waiting', reason: 'ClaimNotBound', message: `${claimName} is ${phase}` };
  return { state: 'ready' };
}

/** Deletes what the plan created (the data on the storage stays: the volume's reclaim policy is Retain). */
export async function deleteBackingVolume(client: Client, plan: BackingVolumePlan, signal: AbortSignal): Promise<void> {
  const calls: Promise<unknown>[] = [];
  if (plan.claim !== undefined && plan.claimRef !== undefined) calls.push(client.delete(objectPath(coreTypes.persistentVolumeClaim, plan.claimRef), undefined, signal));
  if (plan.persistentVolume !== undefined) {
    calls.push(client.delete(objectPath(persistentVolumeType, { name: nameOf(plan.persistentVolume) }), undefined, signal));
  }
  for (const result of await Promise.allSettled(calls)) {
    if (result.status === 'rejected' && !isNotFound(result.reason)) throw result.reason;
  }
}

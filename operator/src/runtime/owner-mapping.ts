// Maps child objects (pods, secrets, claims) back to the key of the object that owns
// them, through the controller owner reference, so that a change to a child
// reconciles its owner.
import { z } from 'zod';
import { type ResourceType, apiVersionOf, keyOf } from './resource.ts';

export const ownerReferenceSchema = z.object({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});
export type OwnerReference = z.infer<typeof ownerReferenceSchema>;

export interface OwnedObject {
  metadata: { name: string; namespace?: string | undefined; ownerReferences?: OwnerReference[] | undefined };
}

/** The controller owner reference of `owner`, for a child object's metadata. */
export function controllerReference(
  ownerType: ResourceType,
  owner: { metadata: { name: string; uid?: string | undefined } },
): OwnerReference {
  const uid = owner.metadata.uid;
  if (uid === undefined) throw new Error(`${ownerType.kind} ${owner.metadata.name} has no uid yet`);
  return {
    apiVersion: apiVersionOf(ownerType),
    kind: ownerType.kind,
    name: owner.metadata.name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The key of the child's controlling owner of `ownerType`, if it has one. */
export function controllerOwnerKey(ownerType: ResourceType, child: OwnedObject): string | undefined {
  const ref = child.metadata.ownerReferences?.find(
    (r) => r.controller === true && r.kind === ownerType.kind && r.apiVersion.split('/')[0] === apiVersionOf(ownerType).split('/')[0],
  );
  if (ref === undefined) return undefined;
  return keyOf({ namespace: ownerType.namespaced ? child.metadata.namespace : undefined, name: ref.name });
}

/** A key mapper for `Controller.watch`: children map to their owner's key, or to none. */
export function mapToOwner(ownerType: ResourceType): (child: OwnedObject) => string[] {
  return (child) => {
    const key = controllerOwnerKey(ownerType, child);
    return key === undefined ? [] : [key];
  };
}

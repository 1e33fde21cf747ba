// Asks the API server — never a cache — about the VM a disk image belongs to before the
// image may go: the VM by name (its UID, and whether it matches the operator's
// schema), and the launcher pods of that VM that have not finished. Only the metadata
// decides presence, so a VM the operator cannot parse still counts as present.
import { VirtualMachine } from '@keyvirt/crds';
import { z } from 'zod';
import { isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import { LABEL_VM, virtualMachineType } from '../vm/names.ts';
import type { OwnerLookup } from './disk-retention.ts';

type Client = Pick<KubeClient, 'get' | 'request'>;

const metadataOnly = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional(), uid: z.string().optional() }),
});

const podList = z.object({
  items: z
    .array(z.object({ metadata: z.object({ name: z.string() }), status: z.object({ phase: z.string().optional() }).optional() }))
    .nullable()
    .optional(),
});

/** The VM's metadata as the API server has it (for events about a VM the operator cannot parse). */
export interface OwnerObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { name: string; namespace?: string | undefined; uid?: string | undefined };
}

export async function lookUpOwner(client: Client, namespace: string, name: string, signal: AbortSignal): Promise<{ lookup: OwnerLookup; object?: OwnerObject }> {
  let raw: unknown;
  try {
    raw = await client.get(objectPath(virtualMachineType, { namespace, name }), signal);
  } catch (err) {
    if (isNotFound(err)) return { lookup: { kind: 'absent' } };
    return { lookup: { kind: 'failed', message: err instanceof Error ? err.message : String(err) } };
  }
  const meta = metadataOnly.safeParse(raw);
  if (!meta.success) return { lookup: { kind: 'failed', message: 'the answer has no metadata' } };
  const full = VirtualMachine.safeParse(raw);
  const issue = full.success ? undefined : full.error.issues[0];
  const schemaProblem = issue === undefined ? undefined : `${issue.path.join('.') || '(root)'}: ${issue.message}`;
  return {
    lookup: { kind: 'present', uid: meta.data.metadata.uid, schemaProblem },
    object: { apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', metadata: meta.data.metadata },
  };
}

/** Pods of VM `name` in `namespace` (launchers of any UID, migration targets; anything labelled for the VM) that have not finished. */
export async function activeLaunchers(client: Client, namespace: string, name: string, signal: AbortSignal): Promise<string[]> {
  const raw = await client.request('GET', collectionPath(coreTypes.pod, namespace), { query: { labelSelector: `${LABEL_VM}=${name}` }, signal });
  const list = podList.parse(raw);
  return (list.items ?? []).filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed').map((p) => p.metadata.name);
}

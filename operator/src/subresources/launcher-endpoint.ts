// From a VM's name to its launcher: the pod the VM's status names (listed by the VM's
// label, so the operator needs no `get` on pods), which must be this VM's (uid label),
// Running, with an IP; and the API token from the VM's launcher Secret, used only when
// that Secret is controlled by this VM (ADR 0107). Every miss is a SubresourceError
// that says what is missing.
import { isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { podSchema, secretSchema, type Pod } from '../runtime/core-schemas.ts';
import { coreTypes, collectionPath, objectPath } from '../runtime/resource.ts';
import { LauncherObjects } from '../vm/launcher-objects.ts';
import { LABEL_VM, LABEL_VM_UID, LAUNCHER_POD_SELECTOR, launcherSecretName, virtualMachineType } from '../vm/names.ts';
import { conflict, notFound } from './errors.ts';
import { z } from 'zod';
import { objectMetaSchema, type Secret } from '../runtime/core-schemas.ts';

/** What this server reads of a VM (the rest of the object is the VM controller's business). */
export const subresourceVmSchema = z.object({
  metadata: objectMetaSchema.extend({ uid: z.string(), name: z.string(), namespace: z.string() }),
  status: z.object({ phase: z.string().optional(), launcherPod: z.string().optional(), nodeName: z.string().optional() }).optional(),
});
export type SubresourceVm = z.infer<typeof subresourceVmSchema>;

export interface LauncherEndpoint {
  readonly baseUrl: string;
  readonly token: string;
  readonly podName: string;
}

const podListSchema = z.object({ items: z.array(podSchema) });

function describe(vm: SubresourceVm): string {
  return `VirtualMachine ${vm.metadata.namespace}/${vm.metadata.name}`;
}

/** The VM, or 404 naming it. */
export async function readVm(client: Pick<KubeClient, 'get'>, namespace: string, name: string, signal?: AbortSignal): Promise<SubresourceVm> {
  try {
    return subresourceVmSchema.parse(await client.get(objectPath(virtualMachineType, { namespace, name }), signal));
  } catch (err) {
    if (isNotFound(err)) throw notFound(`VirtualMachine ${namespace}/${name} not found`);
    throw err;
  }
}

/** The launcher pod the VM's status names, if it is this VM's and can be reached; else why not. */
export function chooseLauncherPod(vm: SubresourceVm, pods: readonly Pod[]): { pod: Pod; ip: string } | { why: string } {
  const wanted = vm.status?.launcherPod;
  const phase = vm.status?.phase ?? 'Stopped';
  if (wanted === undefined || wanted === '') return { why: `${describe(vm)} is not running (phase ${phase})` };
  const pod = pods.find((p) => p.metadata.name === wanted);
  if (pod === undefined) return { why: `${describe(vm)} is not running: its launcher pod ${wanted} is gone (phase ${phase})` };
  if (pod.metadata.labels?.[LABEL_VM_UID] !== vm.metadata.uid) return { why: `${describe(vm)}: pod ${wanted} is not this VM's launcher` };
  const ip = pod.status?.podIP;
  if (pod.status?.phase !== 'Running' || ip === undefined || ip === '') {
    return { why: `${describe(vm)} is not running yet: its launcher pod ${wanted} is ${pod.status?.phase ?? 'Pending'}` };
  }
  return { pod, ip };
}

/** The Secret's token when its controller is this VM (by uid), as the VM controller requires (ADR 0107). */
export function tokenOfOwnSecret(secret: Secret, vm: SubresourceVm): string | undefined {
  const controller = secret.metadata.ownerReferences?.find((r) => r.controller === true);
  const ours = controller?.kind === virtualMachineType.kind && controller.apiVersion.startsWith(`${virtualMachineType.group}/`) && controller.uid === vm.metadata.uid;
  const encoded = secret.data?.token;
  if (!ours || encoded === undefined) return undefined;
  const token = Buffer.from(encoded, 'base64').toString('utf8');
  return token === '' ? undefined : token;
}

/** What the subresource server calls on the API server. */
export type SubresourceKube = Pick<KubeClient, 'get' | 'create' | 'request' | 'delete'>;

/** The launcher API's base URL for a pod IP (the VM controller's). */
export function defaultLauncherUrl(ip: string): string {
  return new LauncherObjects({ get: noKube, create: noKube, request: noKube, delete: noKube }).baseUrl(ip);
}

function noKube(): Promise<unknown> {
  return Promise.reject(new Error('not used'));
}

export async function launcherEndpoint(client: SubresourceKube, vm: SubresourceVm, launcherUrl: (ip: string) => string = defaultLauncherUrl, signal?: AbortSignal): Promise<LauncherEndpoint> {
  const namespace = vm.metadata.namespace;
  const pods = podListSchema.parse(
    await client.request('GET', collectionPath(coreTypes.pod, namespace), { query: { labelSelector: `${LAUNCHER_POD_SELECTOR},${LABEL_VM}=${vm.metadata.name}` }, signal }),
  );
  const chosen = chooseLauncherPod(vm, pods.items);
  if ('why' in chosen) throw conflict(chosen.why);
  let token: string | undefined;
  try {
    const secret = secretSchema.parse(await client.get(objectPath(coreTypes.secret, { namespace, name: launcherSecretName(vm.metadata.name) }), signal));
    token = tokenOfOwnSecret(secret, vm);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  if (token === undefined) throw conflict(`${describe(vm)}: its launcher's credentials are missing`);
  return { baseUrl: launcherUrl(chosen.ip), token, podName: chosen.pod.metadata.name };
}

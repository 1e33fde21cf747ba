// The non-streaming subresources (ADR 0066): pause, unpause and soft-reboot through the
// launcher's lifecycle actions; guestinfo through its guest route; migrate and
// migrate-cancel as VirtualMachineMigration objects (created and deleted by the
// operator on the user's behalf, after the SubjectAccessReview allowed it). Launcher
// answers become Status errors: its 409 stays a 409 with its message, an unreachable
// launcher is a 503.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { fetchGuestInfo, LauncherClient, LauncherHttpError, LauncherUnreachableError, type GuestInfoReport, type LifecycleAction } from '@keyvirt/launcher/api';
import { MIGRATION_FINAL_PHASES, type MigrationPhase } from '@keyvirt/crds';
import { isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { apiVersionOf, collectionPath, objectPath } from '../runtime/resource.ts';
import { LABEL_VM, virtualMachineMigrationType } from '../vm/names.ts';
import { badRequest, conflict, SubresourceError, unavailable } from './errors.ts';
import type { LauncherEndpoint, SubresourceVm } from './launcher-endpoint.ts';
import { SUBRESOURCE_GROUP, SUBRESOURCE_VERSION } from './request-routing.ts';

const API_VERSION = `${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}`;
/** Per launcher request; a guest-agent round trip under TCG takes well under this. */
const LAUNCHER_TIMEOUT_MS = 15_000;
export const ANNOTATION_REQUESTED_BY = 'keyvirt.io/requested-by';

export type LauncherAction = 'pause' | 'unpause' | 'soft-reboot';
const LAUNCHER_ACTIONS: Record<LauncherAction, LifecycleAction> = { pause: 'pause', unpause: 'resume', 'soft-reboot': 'reboot' };

function vmName(vm: SubresourceVm): string {
  return `VirtualMachine ${vm.metadata.namespace}/${vm.metadata.name}`;
}

/** A launcher client error as the Status the user sees. */
export function launcherFailure(vm: SubresourceVm, what: string, err: unknown): SubresourceError {
  if (err instanceof LauncherHttpError) {
    const message = err.body?.error.message ?? `HTTP ${err.status}`;
    if (err.status === 409) return conflict(`${vm.metadata.namespace}/${vm.metadata.name}: cannot ${what}: ${message}`);
    if (err.status === 404) return new SubresourceError(404, 'NotFound', `${vmName(vm)}: ${message}`);
    return unavailable(`${vmName(vm)}: the launcher failed to ${what}: ${message}`, err);
  }
  if (err instanceof LauncherUnreachableError) return unavailable(`${vmName(vm)}: its launcher did not answer`, err);
  return new SubresourceError(500, 'InternalError', `${vmName(vm)}: ${what} failed`, { cause: err });
}

export async function runLauncherAction(vm: SubresourceVm, endpoint: LauncherEndpoint, action: LauncherAction): Promise<Record<string, unknown>> {
  const client = new LauncherClient({ baseUrl: endpoint.baseUrl, token: endpoint.token, timeoutMs: LAUNCHER_TIMEOUT_MS });
  try {
    await client.action(LAUNCHER_ACTIONS[action]);
  } catch (err) {
    throw launcherFailure(vm, action, err);
  }
  return { apiVersion: API_VERSION, kind: 'VirtualMachineActionResult', namespace: vm.metadata.namespace, name: vm.metadata.name, action };
}

export async function readGuestInfo(vm: SubresourceVm, endpoint: LauncherEndpoint): Promise<Record<string, unknown>> {
  let report: GuestInfoReport;
  try {
    report = await fetchGuestInfo({ baseUrl: endpoint.baseUrl, token: endpoint.token, timeoutMs: LAUNCHER_TIMEOUT_MS });
  } catch (err) {
    throw launcherFailure(vm, 'read guest info', err);
  }
  return { apiVersion: API_VERSION, kind: 'VirtualMachineGuestInfo', namespace: vm.metadata.namespace, name: vm.metadata.name, ...report };
}

/** DNS-1123 subdomain, as a node name is. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export const MigrateBodySchema = z.strictObject({
  targetNode: z.string().regex(NODE_NAME, { error: 'targetNode must be a node name (DNS-1123 subdomain)' }).optional(),
});
export type MigrateBody = z.infer<typeof MigrateBodySchema>;

/** pause, unpause, soft-reboot and migrate-cancel take no fields. */
export const EmptyBodySchema = z.strictObject({});

/** The body of an action; empty is `{}`; a 400 names the field at fault. */
export function parseActionBody<S extends z.ZodType>(schema: S, text: string): z.output<S> {
  let json: unknown = {};
  if (text.trim() !== '') {
    try {
      json = JSON.parse(text);
    } catch {
      throw badRequest('the request body is not valid JSON');
    }
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => {
      const unknownKeys = i.code === 'unrecognized_keys' ? ` (unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')})` : '';
      return `${i.path.length === 0 ? 'body' : i.path.map(String).join('.')}: ${i.message}${unknownKeys}`;
    });
    throw badRequest(`invalid request body: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** The VirtualMachineMigration that `migrate` creates (pure). */
export function migrationObject(vm: SubresourceVm, body: MigrateBody, requestedBy: string, suffix: string): Record<string, unknown> {
  const base = vm.metadata.name.slice(0, 253 - '-migrate-'.length - suffix.length);
  return {
    apiVersion: apiVersionOf(virtualMachineMigrationType),
    kind: virtualMachineMigrationType.kind,
    metadata: {
      name: `${base}-migrate-${suffix}`,
      namespace: vm.metadata.namespace,
      // Operators that share a cluster by --vm-selector see only migrations carrying their VMs' labels.
      labels: { ...vm.metadata.labels, [LABEL_VM]: vm.metadata.name },
      annotations: { [ANNOTATION_REQUESTED_BY]: requestedBy.slice(0, 256) },
    },
    spec: {
      vmName: vm.metadata.name,
      ...(body.targetNode === undefined ? {} : { targetNodeSelector: { 'kubernetes.io/hostname': body.targetNode } }),
    },
  };
}

export async function createMigration(client: Pick<KubeClient, 'create'>, vm: SubresourceVm, body: MigrateBody, requestedBy: string): Promise<Record<string, unknown>> {
  if (vm.status?.launcherPod === undefined) throw conflict(`${vmName(vm)} is not running (phase ${vm.status?.phase ?? 'Stopped'}): nothing to migrate`);
  const suffix = randomBytes(4).toString('hex').slice(0, 5);
  const created = z.object({ metadata: z.object({ name: z.string() }) }).parse(
    await client.create(collectionPath(virtualMachineMigrationType, vm.metadata.namespace), migrationObject(vm, body, requestedBy, suffix)),
  );
  return { apiVersion: API_VERSION, kind: 'VirtualMachineMigrateResult', namespace: vm.metadata.namespace, name: vm.metadata.name, migrationName: created.metadata.name };
}

const migrationListSchema = z.object({
  items: z.array(z.object({ metadata: z.object({ name: z.string(), uid: z.string().optional() }), spec: z.object({ vmName: z.string() }).loose(), status: z.object({ phase: z.string().optional() }).loose().optional() })),
});

/** The migrations of `vm` that have not finished (pure). */
export function unfinishedMigrations(vm: string, items: z.infer<typeof migrationListSchema>['items']): string[] {
  return items
    .filter((m) => m.spec.vmName === vm && !(MIGRATION_FINAL_PHASES as readonly string[]).includes((m.status?.phase ?? 'Pending') as MigrationPhase))
    .map((m) => m.metadata.name)
    .sort();
}

export async function cancelMigrations(client: Pick<KubeClient, 'request' | 'delete'>, vm: SubresourceVm): Promise<Record<string, unknown>> {
  const ns = vm.metadata.namespace;
  const list = migrationListSchema.parse(await client.request('GET', collectionPath(virtualMachineMigrationType, ns)));
  const names = unfinishedMigrations(vm.metadata.name, list.items);
  if (names.length === 0) throw new SubresourceError(404, 'NotFound', `${vmName(vm)} has no migration in progress`);
  const cancelled: string[] = [];
  for (const name of names) {
    try {
      await client.delete(objectPath(virtualMachineMigrationType, { namespace: ns, name }));
      cancelled.push(name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return { apiVersion: API_VERSION, kind: 'VirtualMachineMigrateCancelResult', namespace: ns, name: vm.metadata.name, cancelled };
}

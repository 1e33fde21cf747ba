// What the plugin asks of the API server: VirtualMachines (read, request annotation),
// the aggregated subresources of ADR 0066 (actions, guest info, console/VNC streams) and
// launcher pods (port-forward). Every answer is parsed with zod here; every failure
// leaves as a PluginError naming the VM and namespace (api-errors.ts).
import type { KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@keyvirt/crds';
import { z } from 'zod';
import type { KubeClient } from '../runtime/kube-client.ts';
import { explainApiError, SUBRESOURCE_GROUP, SUBRESOURCE_VERSION, type Attempt } from './api-errors.ts';
import { openWebSocket, type WebSocketStream } from './websocket-client.ts';

export interface VmRef {
  readonly namespace: string;
  readonly name: string;
}

export const VmView = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    uid: z.string(),
    annotations: z.record(z.string(), z.string()).optional(),
    resourceVersion: z.string().optional(),
  }),
  spec: z.looseObject({ runStrategy: z.string().optional() }),
  status: z
    .looseObject({
      phase: z.string().optional(),
      nodeName: z.string().optional(),
      launcherPod: z.string().optional(),
      migrationState: z.looseObject({ migrationName: z.string().optional() }).optional(),
    })
    .optional(),
});
export type VmView = z.infer<typeof VmView>;

export const ActionResult = z.object({ kind: z.literal('VirtualMachineActionResult'), action: z.string() });
export const MigrateResult = z.object({ kind: z.literal('VirtualMachineMigrateResult'), migrationName: z.string() });
export const MigrateCancelResult = z.object({ kind: z.literal('VirtualMachineMigrateCancelResult'), cancelled: z.array(z.string()) });

const clipped = z.string().max(4096);
export const GuestInfo = z.object({
  kind: z.literal('VirtualMachineGuestInfo'),
  hostname: clipped.optional(),
  os: z
    .object({
      id: clipped.optional(),
      name: clipped.optional(),
      prettyName: clipped.optional(),
      version: clipped.optional(),
      versionId: clipped.optional(),
      kernelRelease: clipped.optional(),
      kernelVersion: clipped.optional(),
      machine: clipped.optional(),
    })
    .optional(),
  users: z.array(z.object({ user: clipped, domain: clipped.optional(), loginTime: z.number().optional() })).max(1024).default([]),
  filesystems: z
    .array(z.object({ name: clipped, mountpoint: clipped, type: clipped, usedBytes: z.number().optional(), totalBytes: z.number().optional() }))
    .max(1024)
    .default([]),
});
export type GuestInfo = z.infer<typeof GuestInfo>;

export const MigrationView = z.object({
  metadata: z.object({ name: z.string(), creationTimestamp: z.string().optional() }),
  spec: z.looseObject({ vmName: z.string() }),
  status: z.looseObject({ phase: z.string().optional(), targetNode: z.string().optional(), failureReason: z.string().optional() }).optional(),
});
export type MigrationView = z.infer<typeof MigrationView>;

export type Action = 'pause' | 'unpause' | 'soft-reboot';
export type StreamKind = 'console' | 'vnc';

/** The subprotocol ADR 0066 offers for raw bytes. */
export const STREAM_PROTOCOL = 'plain.keyvirt.io';

export class KeyVirtApi {
  readonly #kube: KubeClient;
  readonly #kc: KubeConfig;
  readonly #timeoutMs: number;
  readonly server: string;

  constructor(kube: KubeClient, kc: KubeConfig, timeoutMs: number) {
    this.#kube = kube;
    this.#kc = kc;
    this.#timeoutMs = timeoutMs;
    this.server = kc.getCurrentCluster()?.server ?? 'unknown';
  }

  #attempt(verb: string, resource: string, group: string, ref: VmRef): Attempt {
    return { verb, resource, group, namespace: ref.namespace, name: ref.name, server: this.server };
  }

  async #call<T>(attempt: Attempt, run: () => Promise<unknown>, schema: z.ZodType<T>): Promise<T> {
    let answer: unknown;
    try {
      answer = await run();
    } catch (err) {
      throw explainApiError(err, attempt);
    }
    return schema.parse(answer);
  }

  vmPath(ref: VmRef): string {
    return `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ref.namespace)}/virtualmachines/${encodeURIComponent(ref.name)}`;
  }

  subresourcePath(ref: VmRef, subresource: string): string {
    return `/apis/${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}/namespaces/${encodeURIComponent(ref.namespace)}/virtualmachines/${encodeURIComponent(ref.name)}/${subresource}`;
  }

  getVm(ref: VmRef): Promise<VmView> {
    return this.#call(this.#attempt('get', 'virtualmachines', GROUP, ref), () => this.#kube.get(this.vmPath(ref)), VmView);
  }

  /** Writes the `keyvirt.io/request` annotation (ADR 0061), guarded by the resourceVersion read. */
  requestRun(vm: VmView, request: 'start' | 'stop' | 'restart'): Promise<VmView> {
    const ref = { namespace: vm.metadata.namespace, name: vm.metadata.name };
    const body = { metadata: { resourceVersion: vm.metadata.resourceVersion, annotations: { 'keyvirt.io/request': request } } };
    return this.#call(this.#attempt('patch', 'virtualmachines', GROUP, ref), () => this.#kube.patch(this.vmPath(ref), body, 'merge'), VmView);
  }

  action(ref: VmRef, action: Action): Promise<z.infer<typeof ActionResult>> {
    return this.#call(
      this.#attempt('update', `virtualmachines/${action}`, SUBRESOURCE_GROUP, ref),
      () => this.#kube.request('PUT', this.subresourcePath(ref, action), { body: {}, timeoutMs: this.#timeoutMs }),
      ActionResult,
    );
  }

  migrate(ref: VmRef, targetNode: string | undefined): Promise<z.infer<typeof MigrateResult>> {
    const body = targetNode === undefined ? {} : { targetNode };
    return this.#call(
      this.#attempt('update', 'virtualmachines/migrate', SUBRESOURCE_GROUP, ref),
      () => this.#kube.request('PUT', this.subresourcePath(ref, 'migrate'), { body, timeoutMs: this.#timeoutMs }),
      MigrateResult,
    );
  }

  migrateCancel(ref: VmRef): Promise<z.infer<typeof MigrateCancelResult>> {
    return this.#call(
      this.#attempt('update', 'virtualmachines/migrate-cancel', SUBRESOURCE_GROUP, ref),
      () => this.#kube.request('PUT', this.subresourcePath(ref, 'migrate-cancel'), { body: {}, timeoutMs: this.#timeoutMs }),
      MigrateCancelResult,
    );
  }

  getMigration(namespace: string, name: string): Promise<MigrationView> {
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/virtualmachinemigrations/${encodeURIComponent(name)}`;
    return this.#call({ verb: 'get', resource: 'virtualmachinemigrations', group: GROUP, namespace, name, server: this.server }, () => this.#kube.get(path), MigrationView);
  }

  guestInfo(ref: VmRef): Promise<GuestInfo> {
    return this.#call(this.#attempt('get', 'virtualmachines/guestinfo', SUBRESOURCE_GROUP, ref), () => this.#kube.get(this.subresourcePath(ref, 'guestinfo')), GuestInfo);
  }

  async openStream(ref: VmRef, kind: StreamKind): Promise<WebSocketStream> {
    try {
      return await openWebSocket(this.#kc, this.subresourcePath(ref, kind), { protocols: [STREAM_PROTOCOL], timeoutMs: this.#timeoutMs });
    } catch (err) {
      throw explainApiError(err, this.#attempt('get', `virtualmachines/${kind}`, SUBRESOURCE_GROUP, ref));
    }
  }

  /**
   * Whether the user may `verb` the VM's subresource (SelfSubjectAccessReview, which
   * every authenticated user may create): lets a verb that only connects later (vnc)
   * fail at once.
   */
  async mayUseSubresource(ref: VmRef, verb: string, subresource: string): Promise<boolean> {
    const review = {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: { group: SUBRESOURCE_GROUP, version: SUBRESOURCE_VERSION, resource: 'virtualmachines', subresource, verb, namespace: ref.namespace, name: ref.name } },
    };
    const answer = await this.#call(
      { verb: 'create', resource: 'selfsubjectaccessreviews', group: 'authorization.k8s.io', namespace: ref.namespace, server: this.server },
      () => this.#kube.create('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', review),
      z.object({ status: z.object({ allowed: z.boolean() }) }),
    );
    return answer.status.allowed;
  }

  /** The API server's version (`/version`), or what went wrong. */
  async serverVersion(): Promise<string> {
    const answer = await this.#call(
      { verb: 'get', resource: 'version', group: '', namespace: '', server: this.server },
      () => this.#kube.get('/version'),
      z.object({ gitVersion: z.string() }),
    );
    return answer.gitVersion;
  }

  /** Whether an API group/version is served (discovery). */
  async served(groupVersion: string): Promise<boolean> {
    try {
      await this.#kube.get(`/apis/${groupVersion}`);
      return true;
    } catch {
      return false;
    }
  }
}

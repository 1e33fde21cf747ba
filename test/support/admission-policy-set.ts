// Puts a chosen set of ValidatingAdmissionPolicies and bindings in force in the local
// cluster, for a benchmark that compares the API server with and without them, and puts
// back what it found. The API server compiles its policies from its informers' whole
// cache, at most once a second after a change; a policy is in force once a compilation
// has seen it. A sentinel policy and binding, created after everything else and refusing
// one dry-run request in one namespace, show that moment: once the API server refuses
// that request, it has compiled a cache that holds every earlier creation and deletion
// (each kind's watch delivers in order). Policies are written by server-side apply under
// the field manager the suites use for operator/deploy/rbac.yaml (operator-process.ts).
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { isNotFound, KubeApiError, type KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { eventually } from './cluster.ts';

export class AdmissionPolicySetError extends Error {
  override readonly name = 'AdmissionPolicySetError';
}

export type PolicyKind = 'ValidatingAdmissionPolicy' | 'ValidatingAdmissionPolicyBinding';
const GROUP_VERSION = 'admissionregistration.k8s.io/v1';
const PATHS: Record<PolicyKind, string> = {
  ValidatingAdmissionPolicy: `/apis/${GROUP_VERSION}/validatingadmissionpolicies`,
  ValidatingAdmissionPolicyBinding: `/apis/${GROUP_VERSION}/validatingadmissionpolicybindings`,
};
/** The field manager of operator/deploy/rbac.yaml's apply by the suites. */
export const POLICY_FIELD_MANAGER = 'keyvirt-tests';
const SENTINEL_PROBE = 'admission-cost-sentinel-probe';

/** One policy or binding as written: what is applied. */
export interface PolicyObject {
  readonly kind: PolicyKind;
  readonly name: string;
  readonly manifest: Readonly<Record<string, unknown>>;
}

const manifestSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.looseObject({ name: z.string().min(1), labels: z.record(z.string(), z.string()).optional(), annotations: z.record(z.string(), z.string()).optional() }),
  spec: z.looseObject({ policyName: z.string().optional() }),
});
const liveSchema = z.object({
  items: z.array(
    z.looseObject({
      metadata: z.looseObject({ name: z.string(), uid: z.string(), resourceVersion: z.string(), generation: z.number().optional() }),
      spec: z.looseObject({ policyName: z.string().optional() }),
      status: z.looseObject({ observedGeneration: z.number().optional() }).optional(),
    }),
  ),
});
type Live = z.infer<typeof liveSchema>['items'][number];

const isPolicyKind = (kind: string): kind is PolicyKind => kind === 'ValidatingAdmissionPolicy' || kind === 'ValidatingAdmissionPolicyBinding';

/** What is applied of a manifest: no server-set metadata, no status. */
function writable(kind: PolicyKind, m: z.infer<typeof manifestSchema>): Record<string, unknown> {
  const annotations = Object.entries(m.metadata.annotations ?? {}).filter(([k]) => k !== 'kubectl.kubernetes.io/last-applied-configuration');
  const metadata = { name: m.metadata.name, ...(m.metadata.labels === undefined ? {} : { labels: m.metadata.labels }), ...(annotations.length > 0 ? { annotations: Object.fromEntries(annotations) } : {}) };
  return { apiVersion: GROUP_VERSION, kind, metadata, spec: m.spec };
}

/** The ValidatingAdmissionPolicies and bindings of a manifest file; every binding names a policy of the file. */
export async function readPolicyManifest(file: string): Promise<PolicyObject[]> {
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new AdmissionPolicySetError(`cannot read the policy manifest ${file}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const objects: PolicyObject[] = [];
  for (const [i, doc] of parseAllDocuments(text).entries()) {
    if (doc.errors.length > 0) throw new AdmissionPolicySetError(`${file}: document ${i + 1} is not YAML: ${doc.errors[0]?.message ?? ''}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const kind = z.looseObject({ kind: z.string() }).safeParse(value);
    if (!kind.success || !isPolicyKind(kind.data.kind)) continue;
    const parsed = manifestSchema.safeParse(value);
    if (!parsed.success) throw new AdmissionPolicySetError(`${file}: document ${i + 1} (${kind.data.kind}): ${parsed.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
    if (parsed.data.apiVersion !== GROUP_VERSION) throw new AdmissionPolicySetError(`${file}: ${kind.data.kind} ${parsed.data.metadata.name}: apiVersion ${parsed.data.apiVersion}, expected ${GROUP_VERSION}`);
    objects.push({ kind: kind.data.kind, name: parsed.data.metadata.name, manifest: writable(kind.data.kind, parsed.data) });
  }
  const policies = new Set(objects.filter((o) => o.kind === 'ValidatingAdmissionPolicy').map((o) => o.name));
  const bindings = objects.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding');
  if (bindings.length === 0) throw new AdmissionPolicySetError(`${file} holds no ValidatingAdmissionPolicyBinding: no policy of it would be in force`);
  for (const b of bindings) {
    const policyName = manifestSchema.shape.spec.parse(b.manifest.spec).policyName;
    if (policyName === undefined || !policies.has(policyName)) throw new AdmissionPolicySetError(`${file}: binding ${b.name}: spec.policyName ${String(policyName)} is not a policy of the file`);
  }
  return objects;
}

async function listLive(client: KubeClient, kind: PolicyKind): Promise<Live[]> {
  return liveSchema.parse(await client.get(PATHS[kind])).items;
}

/** The policies and bindings in the cluster whose name `owned` claims, in a form that can be applied again. */
export async function snapshotPolicies(client: KubeClient, owned: (name: string) => boolean): Promise<PolicyObject[]> {
  const found: PolicyObject[] = [];
  for (const kind of Object.keys(PATHS).filter(isPolicyKind)) {
    for (const item of await listLive(client, kind)) {
      if (owned(item.metadata.name)) found.push({ kind, name: item.metadata.name, manifest: writable(kind, manifestSchema.parse({ apiVersion: GROUP_VERSION, kind, ...item })) });
    }
  }
  return found;
}

/** Every owned policy and binding, with uid and resourceVersion: changes when anyone writes one. */
export async function policySignature(client: KubeClient, owned: (name: string) => boolean): Promise<string> {
  const parts: string[] = [];
  for (const kind of Object.keys(PATHS).filter(isPolicyKind)) {
    for (const item of await listLive(client, kind)) {
      if (owned(item.metadata.name)) parts.push(`${kind}/${item.metadata.name}@${item.metadata.uid}:${item.metadata.resourceVersion}`);
    }
  }
  return parts.sort().join(',');
}

/** Bindings in force that `owned` does not claim (another release's policies, say): both phases of a comparison pay them. */
export async function otherBindings(client: KubeClient, owned: (name: string) => boolean): Promise<string[]> {
  return (await listLive(client, 'ValidatingAdmissionPolicyBinding')).map((b) => b.metadata.name).filter((n) => !owned(n) && !n.startsWith('admission-cost-sentinel-'));
}

/** Deletes every owned binding, then every owned policy. */
export async function removePolicies(client: KubeClient, owned: (name: string) => boolean): Promise<void> {
  for (const kind of ['ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicy'] as const) {
    for (const item of await listLive(client, kind)) {
      if (owned(item.metadata.name)) await client.delete(`${PATHS[kind]}/${item.metadata.name}`).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
    }
  }
}

/** Server-side applies the objects (policies first), by `applier`, whose field manager owns them. */
export async function applyPolicies(applier: KubeClient, objects: readonly PolicyObject[]): Promise<void> {
  const ordered = [...objects.filter((o) => o.kind === 'ValidatingAdmissionPolicy'), ...objects.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding')];
  for (const o of ordered) await applier.patch(`${PATHS[o.kind]}/${o.name}`, o.manifest, 'apply');
}

/** Waits until the controller manager has type-checked each named policy's generation (its status write would recompile the set mid-measurement). */
export async function untilTypeChecked(client: KubeClient, names: readonly string[]): Promise<void> {
  await eventually(
    `the type check of policies ${names.join(', ')}`,
    async () => {
      const live = new Map((await listLive(client, 'ValidatingAdmissionPolicy')).map((p) => [p.metadata.name, p]));
      return names.every((n) => { const p = live.get(n); return p !== undefined && p.status?.observedGeneration === p.metadata.generation; }) ? true : undefined;
    },
    60_000,
    200,
  );
}

/** The sentinel's refusal of its probe, or undefined while the API server admits it. */
async function probeSentinel(client: KubeClient, namespace: string, policy: string): Promise<string | undefined> {
  const probe = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: SENTINEL_PROBE, namespace } };
  try {
    await client.request('POST', `/api/v1/namespaces/${namespace}/configmaps`, { body: probe, query: { dryRun: 'All' } });
    return undefined;
  } catch (err) {
    if (err instanceof KubeApiError && err.message.includes(`ValidatingAdmissionPolicy '${policy}'`)) return err.message;
    throw err;
  }
}

/**
 * Creates the sentinel (after every other change of the phase) and resolves once the API
 * server enforces it; the returned function deletes it again.
 */
export async function untilPolicySetInForce(client: KubeClient, namespace: string, id: string): Promise<() => Promise<void>> {
  const name = `admission-cost-sentinel-${id}`;
  const policy = {
    apiVersion: GROUP_VERSION, kind: 'ValidatingAdmissionPolicy', metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] }] },
      validations: [{ expression: `object.metadata.name != '${SENTINEL_PROBE}'`, message: 'the admission-cost sentinel refuses its probe' }],
    },
  };
  const binding = {
    apiVersion: GROUP_VERSION, kind: 'ValidatingAdmissionPolicyBinding', metadata: { name },
    spec: { policyName: name, validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } } } },
  };
  const remove = async (): Promise<void> => {
    for (const kind of ['ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicy'] as const) {
      await client.delete(`${PATHS[kind]}/${name}`).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
    }
  };
  try {
    await client.create(PATHS.ValidatingAdmissionPolicy, policy);
    await untilTypeChecked(client, [name]);
    await client.create(PATHS.ValidatingAdmissionPolicyBinding, binding);
    await eventually('the API server to enforce the policies (its sentinel refusing a dry-run ConfigMap)', () => probeSentinel(client, namespace, name), 60_000, 100);
  } catch (err) {
    await remove();
    throw err;
  }
  return remove;
}

/**
 * Puts back the owned policies: `shipped` (operator/deploy/rbac.yaml's, as it reads now)
 * and anything else found at the start; deletes the owned objects neither holds.
 */
export async function restorePolicies(client: KubeClient, applier: KubeClient, owned: (name: string) => boolean, shipped: readonly PolicyObject[], found: readonly PolicyObject[]): Promise<void> {
  const key = (o: Pick<PolicyObject, 'kind' | 'name'>): string => `${o.kind}/${o.name}`;
  const desired = new Map(shipped.map((o) => [key(o), o]));
  for (const o of found) if (!desired.has(key(o))) desired.set(key(o), o);
  for (const kind of ['ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicy'] as const) {
    for (const item of await listLive(client, kind)) {
      if (owned(item.metadata.name) && !desired.has(key({ kind, name: item.metadata.name }))) {
        await client.delete(`${PATHS[kind]}/${item.metadata.name}`).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
      }
    }
  }
  await applyPolicies(applier, [...desired.values()]);
}

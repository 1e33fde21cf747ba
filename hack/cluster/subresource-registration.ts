// subresources.keyvirt.io (ADR 0066) and the launcher eviction webhook (ADR 0121) for
// operators running on the host: `npm start`'s and the suites'. The aggregator dials the Service `keyvirt-subresources` (no selector) at the endpoints of
// its EndpointSlices: each suite adds a slice of its own (the bridge's gateway address,
// which is the kube-apiserver's, and its operator's port) and removes it when its
// operator exits, so operators running side by side all serve (any of them serves every
// namespace's VMs, and answers every launcher eviction) and none pulls the API from
// under another. They share one
// serving certificate for `<service>.keyvirt-system.svc`, made once under the cluster
// lock in the cluster's PKI directory, so the APIService's caBundle fits every operator;
// the webhook's path token likewise.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { kubectl } from './kubectl.ts';
import type { ClusterLayout } from './layout.ts';
import { withClusterLock } from './lock.ts';

export const OPERATOR_NAMESPACE = 'keyvirt-system';

export const SUBRESOURCE_SERVICE = 'keyvirt-subresources';
export const SUBRESOURCE_APISERVICE = 'v1alpha1.subresources.keyvirt.io';
const SLICE_LABEL = 'keyvirt.io/local-subresource-slice';

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

export interface SubresourceTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The launcher eviction webhook's path token (ADR 0121), shared like the certificate. */
  readonly webhookTokenFile: string;
}

export const EVICTION_WEBHOOK_CONFIG = 'keyvirt-launcher-eviction';

/** The shared CA and serving certificate for `<service>.keyvirt-system.svc`, made if missing. */
/**
 * The shared CA, serving certificate and webhook token, made if missing; the caller holds
 * the cluster lock (`npm start`'s steps run under it).
 */
export async function subresourceServingCertLocked(layout: ClusterLayout): Promise<SubresourceTls> {
  const dir = layout.pkiDir;
  const files = { caFile: path.join(dir, 'subresources-ca.crt'), certFile: path.join(dir, 'subresources.crt'), keyFile: path.join(dir, 'subresources.key'), webhookTokenFile: path.join(dir, 'eviction-webhook.token') };
  if (!existsSync(files.webhookTokenFile)) await writeFile(files.webhookTokenFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  if ([files.caFile, files.certFile, files.keyFile].every((f) => existsSync(f))) return files;
  const dns = `${SUBRESOURCE_SERVICE}.${OPERATOR_NAMESPACE}.svc`;
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'subresources-ca.key', '-out', 'subresources-ca.crt', '-subj', '/CN=keyvirt-subresources-test-ca', '-days', '3650'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'subresources.key', '-out', 'subresources.csr', '-subj', `/CN=${dns}`], dir);
  await writeFile(path.join(dir, 'subresources.ext'), `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${dns}\n`);
  openssl(['x509', '-req', '-in', 'subresources.csr', '-CA', 'subresources-ca.crt', '-CAkey', 'subresources-ca.key', '-CAcreateserial', '-days', '3650', '-sha256', '-extfile', 'subresources.ext', '-out', 'subresources.crt'], dir);
  return files;
}

/** The same, under the cluster lock (a suite's operator: suites start side by side). */
export function subresourceServingCert(layout: ClusterLayout): Promise<SubresourceTls> {
  return withClusterLock(layout, () => subresourceServingCertLocked(layout));
}

const sliceList = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string() }), ports: z.array(z.object({ port: z.number() })).optional() })) });

/** True when something accepts TCP connections at host:port. */
function acceptsConnections(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2000, () => socket.destroy());
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(false));
  });
}

/**
 * Adds `host:port` as an endpoint of the APIService's Service (a slice named after
 * `id`), with the Service and APIService made if missing; slices of operators that no
 * longer listen (a suite killed before it could remove its own) are removed.
 */
export async function registerSubresourceApi(layout: ClusterLayout, id: string, host: string, port: number, tls: SubresourceTls): Promise<void> {
  const caBundle = (await readFile(tls.caFile)).toString('base64');
  const webhookToken = (await readFile(tls.webhookTokenFile, 'utf8')).trim();
  const objects = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: SUBRESOURCE_SERVICE, namespace: OPERATOR_NAMESPACE }, spec: { ports: [{ name: 'https', port: 443, targetPort: 8443, protocol: 'TCP' }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${SUBRESOURCE_SERVICE}-${id}`,
        namespace: OPERATOR_NAMESPACE,
        labels: { 'kubernetes.io/service-name': SUBRESOURCE_SERVICE, 'endpointslice.kubernetes.io/managed-by': 'keyvirt-local-cluster', [SLICE_LABEL]: 'true' },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: [host], conditions: { ready: true } }],
      ports: [{ name: 'https', port, protocol: 'TCP' }],
    },
    {
      apiVersion: 'apiregistration.k8s.io/v1',
      kind: 'APIService',
      metadata: { name: SUBRESOURCE_APISERVICE },
      spec: { group: 'subresources.keyvirt.io', version: 'v1alpha1', service: { name: SUBRESOURCE_SERVICE, namespace: OPERATOR_NAMESPACE, port: 443 }, caBundle, groupPriorityMinimum: 100, versionPriority: 15 },
    },
    // The launcher eviction webhook as the chart registers it (templates/subresources.yaml).
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: EVICTION_WEBHOOK_CONFIG },
      webhooks: [
        {
          name: 'launcher-eviction.keyvirt.io',
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          failurePolicy: 'Fail',
          timeoutSeconds: 10,
          clientConfig: { service: { name: SUBRESOURCE_SERVICE, namespace: OPERATOR_NAMESPACE, port: 443, path: `/admission/launcher-eviction/${webhookToken}` }, caBundle },
          rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods/eviction'], scope: 'Namespaced' }],
          matchConditions: [{ name: 'launcher-pods-only', expression: "request.name.startsWith('launcher-')" }],
        },
      ],
    },
  ];
  kubectl(layout, ['apply', '--server-side', '--force-conflicts', '--field-manager=keyvirt-local-cluster', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const slices = sliceList.parse(JSON.parse(kubectl(layout, ['get', 'endpointslices', '-n', OPERATOR_NAMESPACE, '-l', `kubernetes.io/service-name=${SUBRESOURCE_SERVICE}`, '-o', 'json'])));
  for (const slice of slices.items) {
    const slicePort = slice.ports?.[0]?.port;
    if (slice.metadata.name === `${SUBRESOURCE_SERVICE}-${id}` || slicePort === undefined || (await acceptsConnections(host, slicePort))) continue;
    kubectl(layout, ['delete', 'endpointslice', slice.metadata.name, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
  }
}

/** Removes the slice `id` added. */
export function unregisterSubresourceApi(layout: ClusterLayout, id: string): void {
  kubectl(layout, ['delete', 'endpointslice', `${SUBRESOURCE_SERVICE}-${id}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
}

const apiServiceStatus = z.object({ status: z.object({ conditions: z.array(z.object({ type: z.string(), status: z.string(), message: z.string().optional() })).optional() }).optional() });

/** Waits until the kube-apiserver marks the APIService Available. */
export async function waitSubresourceApiAvailable(layout: ClusterLayout, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const parsed = apiServiceStatus.parse(JSON.parse(kubectl(layout, ['get', 'apiservice', SUBRESOURCE_APISERVICE, '-o', 'json'])));
    const available = parsed.status?.conditions?.find((c) => c.type === 'Available');
    if (available?.status === 'True') return;
    last = available?.message ?? '';
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`APIService ${SUBRESOURCE_APISERVICE} not Available within ${timeoutMs} ms: ${last}`);
}


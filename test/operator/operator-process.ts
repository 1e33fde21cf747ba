// Runs the real operator (operator/src/main.ts) as a process on the host against the
// local cluster, under the ServiceAccount and ClusterRole it ships with
// (operator/deploy/rbac.yaml): a token for that account goes into a kubeconfig of its own.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { RETIRED_POLICIES } from '../../hack/cli/operator-steps.ts';
import { withClusterLock } from '../../hack/cluster/lock.ts';
import type { TestCluster } from '../support/cluster.ts';
import { TEST_RUN_LABEL, type Scratch } from './vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
export const RBAC_MANIFEST = path.join(repoRoot, 'operator/deploy/rbac.yaml');
export const OPERATOR_NAMESPACE = 'keyvirt-system';
export const OPERATOR_SERVICE_ACCOUNT = 'keyvirt-operator';

/** Applies the shipped RBAC and writes a kubeconfig that authenticates as the operator's ServiceAccount. */
export async function operatorKubeconfig(cluster: TestCluster, file: string): Promise<string> {
  cluster.kubectl(['apply', '--server-side', '--field-manager=keyvirt-tests', '-f', RBAC_MANIFEST]);
  // Off a cluster kept from an earlier version.
  cluster.kubectl(['delete', '--ignore-not-found', ...RETIRED_POLICIES]);
  const token = cluster.kubectl(['create', 'token', OPERATOR_SERVICE_ACCOUNT, '-n', OPERATOR_NAMESPACE, '--duration=6h']).trim();
  const admin = new KubeConfig();
  admin.loadFromFile(cluster.kubeconfig);
  const server = admin.getCurrentCluster();
  if (server === null) throw new Error('admin kubeconfig has no cluster');
  const caData = server.caData ?? (server.caFile !== undefined ? (await readFile(server.caFile)).toString('base64') : undefined);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server: server.server, ...(caData !== undefined ? { 'certificate-authority-data': caData } : {}) } }],
    users: [{ name: OPERATOR_SERVICE_ACCOUNT, user: { token } }],
    contexts: [{ name: OPERATOR_SERVICE_ACCOUNT, context: { cluster: 'local', user: OPERATOR_SERVICE_ACCOUNT } }],
    'current-context': OPERATOR_SERVICE_ACCOUNT,
  };
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

export interface OperatorOptions {
  kubeconfig: string;
  logFile: string;
  identity: string;
  leaseName: string;
  vmSelector?: string;
  extraArgs?: readonly string[];
}

export interface OperatorProcess {
  readonly pid: number;
  readonly identity: string;
  /** The health/metrics port, once listening. */
  readonly healthPort: Promise<number>;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
  /** Every log line so far, parsed. */
  logLines(): Promise<Record<string, unknown>[]>;
}

const listening = z.object({ msg: z.literal('health and metrics server listening'), port: z.number() });

export function startOperator(options: OperatorOptions): OperatorProcess {
  const node = process.execPath;
  const args = [
    path.join(repoRoot, 'operator/src/main.ts'),
    '--kubeconfig', options.kubeconfig,
    '--namespace', OPERATOR_NAMESPACE,
    '--identity', options.identity,
    '--lease-name', options.leaseName,
    '--health-address', '127.0.0.1:0',
    '--metrics-address', '127.0.0.1:0',
    '--allow-emulation', 'true',
    '--lease-duration-ms', '6000',
    '--renew-deadline-ms', '4000',
    '--retry-period-ms', '1000',
    ...(options.vmSelector !== undefined ? ['--vm-selector', options.vmSelector] : []),
    // Storage domains of other suites (and of `npm start`) belong to their own operators.
    ...(options.vmSelector !== undefined && !(options.extraArgs ?? []).includes('--storage-domain-selector')
      ? ['--storage-domain-selector', options.vmSelector]
      : []),
    ...(options.extraArgs ?? []),
  ];
  const child: ChildProcess = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: options.kubeconfig } });
  const out = createWriteStream(options.logFile, { flags: 'a' });
  let resolvePort: (port: number) => void = () => undefined;
  const healthPort = new Promise<number>((resolve) => (resolvePort = resolve));
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out.write(chunk);
    pending += chunk.toString('utf8');
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        const parsed = listening.safeParse(JSON.parse(line));
        if (parsed.success) resolvePort(parsed.data.port);
      } catch {
        // not JSON
      }
      nl = pending.indexOf('\n');
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => out.write(chunk));
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      out.end();
      resolve(code ?? signal ?? 'unknown');
    });
  });
  if (child.pid === undefined) throw new Error('operator did not start');
  const pid = child.pid;
  const port = Promise.race([healthPort, exited.then((c) => Promise.reject(new Error(`operator exited (${String(c)}) before listening; log: ${options.logFile}`)))]);
  port.catch(() => undefined); // callers that never await it must not crash the process
  return {
    pid,
    identity: options.identity,
    healthPort: port,
    exited,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    logLines: async () =>
      (await readFile(options.logFile, 'utf8'))
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
  };
}

/**
 * A suite's own operator: under the shipped RBAC, managing only the VMs and storage
 * domains labelled with the suite's run id, leading on a lease of its own; resolves
 * once its health server listens.
 */
export async function startSuiteOperator(cluster: TestCluster, s: Scratch, suite: string, extraArgs?: readonly string[]): Promise<OperatorProcess> {
  const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  const operator = startOperator({
    kubeconfig,
    logFile: path.join(s.dir, 'operator.log'),
    identity: `e2e-${suite}-${s.runId}`,
    leaseName: `keyvirt-e2e-${s.runId}`,
    vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
    extraArgs,
  });
  await operator.healthPort;
  return operator;
}

/** SIGTERM, up to 20 s to finish, then SIGKILL. */
export async function stopOperator(operator: OperatorProcess): Promise<void> {
  operator.kill('SIGTERM');
  await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 20_000))]);
  operator.kill('SIGKILL');
}

/** GETs a path of the operator's health server: status code and body. */
export async function probe(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Finished storage job pods of domain `domain` in the operator's namespace (suites run in parallel: never another domain's). */
export function deleteDomainJobPods(cluster: TestCluster, domain: string): void {
  const listed = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string(), annotations: z.record(z.string(), z.string()).optional() }) })) })
    .parse(JSON.parse(cluster.kubectl(['get', 'pods', '-n', OPERATOR_NAMESPACE, '-l', 'app.kubernetes.io/component=storage-job', '--field-selector', 'status.phase!=Running', '-o', 'json'])));
  const names = listed.items.filter((p) => p.metadata.annotations?.['keyvirt.io/storage-domain'] === domain).map((p) => p.metadata.name);
  if (names.length > 0) cluster.kubectl(['delete', 'pods', '-n', OPERATOR_NAMESPACE, ...names, '--ignore-not-found', '--wait=false']);
}

// ---------------------------------------------------------------------------------
// subresources.keyvirt.io (ADR 0066) for suites' operators running on the host. The
// aggregator dials the Service `keyvirt-subresources` (no selector) at the endpoints of
// its EndpointSlices: each suite adds a slice of its own (the bridge's gateway address,
// which is the kube-apiserver's, and its operator's port) and removes it when its
// operator exits, so suites running side by side all serve (any suite's operator serves
// every namespace's VMs) and none pulls the API from under another. They share one
// serving certificate for `<service>.keyvirt-system.svc`, made once under the cluster
// lock in the cluster's PKI directory, so the APIService's caBundle fits every operator.

export const SUBRESOURCE_SERVICE = 'keyvirt-subresources';
export const SUBRESOURCE_APISERVICE = 'v1alpha1.subresources.keyvirt.io';
const SLICE_LABEL = 'keyvirt.io/test-subresource-slice';

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

export interface SubresourceTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** The shared CA and serving certificate for `<service>.keyvirt-system.svc`, made if missing. */
export async function subresourceServingCert(cluster: TestCluster): Promise<SubresourceTls> {
  const dir = cluster.layout.pkiDir;
  const files = { caFile: path.join(dir, 'subresources-ca.crt'), certFile: path.join(dir, 'subresources.crt'), keyFile: path.join(dir, 'subresources.key') };
  await withClusterLock(cluster.layout, async () => {
    if ([files.caFile, files.certFile, files.keyFile].every((f) => existsSync(f))) return;
    const dns = `${SUBRESOURCE_SERVICE}.${OPERATOR_NAMESPACE}.svc`;
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'subresources-ca.key', '-out', 'subresources-ca.crt', '-subj', '/CN=keyvirt-subresources-test-ca', '-days', '3650'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'subresources.key', '-out', 'subresources.csr', '-subj', `/CN=${dns}`], dir);
    await writeFile(path.join(dir, 'subresources.ext'), `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${dns}\n`);
    openssl(['x509', '-req', '-in', 'subresources.csr', '-CA', 'subresources-ca.crt', '-CAkey', 'subresources-ca.key', '-CAcreateserial', '-days', '3650', '-sha256', '-extfile', 'subresources.ext', '-out', 'subresources.crt'], dir);
  });
  return files;
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
export async function registerSubresourceApi(cluster: TestCluster, id: string, host: string, port: number, caFile: string): Promise<void> {
  const caBundle = (await readFile(caFile)).toString('base64');
  const objects = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: SUBRESOURCE_SERVICE, namespace: OPERATOR_NAMESPACE }, spec: { ports: [{ name: 'https', port: 443, targetPort: 8443, protocol: 'TCP' }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${SUBRESOURCE_SERVICE}-${id}`,
        namespace: OPERATOR_NAMESPACE,
        labels: { 'kubernetes.io/service-name': SUBRESOURCE_SERVICE, 'endpointslice.kubernetes.io/managed-by': 'keyvirt-tests', [SLICE_LABEL]: 'true' },
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
  ];
  cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=keyvirt-tests', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const slices = sliceList.parse(JSON.parse(cluster.kubectl(['get', 'endpointslices', '-n', OPERATOR_NAMESPACE, '-l', `kubernetes.io/service-name=${SUBRESOURCE_SERVICE}`, '-o', 'json'])));
  for (const slice of slices.items) {
    const slicePort = slice.ports?.[0]?.port;
    if (slice.metadata.name === `${SUBRESOURCE_SERVICE}-${id}` || slicePort === undefined || (await acceptsConnections(host, slicePort))) continue;
    cluster.kubectl(['delete', 'endpointslice', slice.metadata.name, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
  }
}

/** Removes the slice `id` added. */
export function unregisterSubresourceApi(cluster: TestCluster, id: string): void {
  cluster.kubectl(['delete', 'endpointslice', `${SUBRESOURCE_SERVICE}-${id}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
}

const apiServiceStatus = z.object({ status: z.object({ conditions: z.array(z.object({ type: z.string(), status: z.string(), message: z.string().optional() })).optional() }).optional() });

/** Waits until the kube-apiserver marks the APIService Available. */
export async function waitSubresourceApiAvailable(cluster: TestCluster, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const parsed = apiServiceStatus.parse(JSON.parse(cluster.kubectl(['get', 'apiservice', SUBRESOURCE_APISERVICE, '-o', 'json'])));
    const available = parsed.status?.conditions?.find((c) => c.type === 'Available');
    if (available?.status === 'True') return;
    last = available?.message ?? '';
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`APIService ${SUBRESOURCE_APISERVICE} not Available within ${timeoutMs} ms: ${last}`);
}

const subresourceListening = z.object({ msg: z.literal('subresource server listening'), port: z.number() });

/**
 * A suite's operator that also serves subresources.keyvirt.io, registered and Available;
 * its endpoint is removed when the operator exits.
 */
export async function startSubresourceOperator(cluster: TestCluster, s: Scratch, suite: string, extraArgs: readonly string[] = []): Promise<OperatorProcess & { subresourcePort: number }> {
  const tls = await subresourceServingCert(cluster);
  const host = cluster.apiServer.host;
  const operator = await startSuiteOperator(cluster, s, suite, [
    '--subresources-address', `${host}:0`, '--subresources-cert-file', tls.certFile, '--subresources-key-file', tls.keyFile, ...extraArgs,
  ]);
  const deadline = Date.now() + 60_000;
  let port: number | undefined;
  while (port === undefined) {
    port = (await operator.logLines()).map((l) => subresourceListening.safeParse(l)).find((p) => p.success)?.data?.port;
    if (port !== undefined) break;
    if (Date.now() > deadline) throw new Error(`the operator's subresource server did not listen within 60 s; log: ${path.join(s.dir, 'operator.log')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const id = `${suite}-${s.runId}`;
  await registerSubresourceApi(cluster, id, host, port, tls.caFile);
  void operator.exited.then(() => {
    try {
      unregisterSubresourceApi(cluster, id);
    } catch {
      // the cluster may already be gone; the next registration prunes the slice
    }
  });
  await waitSubresourceApiAvailable(cluster);
  return Object.assign(operator, { subresourcePort: port });
}

// Runs the real operator (operator/src/main.ts) as a process on the host against the
// local cluster, under the ServiceAccount and ClusterRole it ships with
// (operator/deploy/rbac.yaml): a token for that account goes into a kubeconfig of its own.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { RETIRED_POLICIES } from '../../hack/cli/operator-steps.ts';
import { OPERATOR_NAMESPACE, registerSubresourceApi, subresourceServingCert, unregisterSubresourceApi, waitSubresourceApiAvailable } from '../../hack/cluster/subresource-registration.ts';
import type { TestCluster } from '../support/cluster.ts';
import { TEST_RUN_LABEL, type Scratch } from './vm-fixtures.ts';

export { OPERATOR_NAMESPACE };

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
export const RBAC_MANIFEST = path.join(repoRoot, 'operator/deploy/rbac.yaml');
export const OPERATOR_SERVICE_ACCOUNT = 'keyvirt-operator';

/**
 * Applies the shipped RBAC (or `rbacManifest`: a benchmark's baseline runs under its own
 * revision's) and writes a kubeconfig that authenticates as the operator's ServiceAccount.
 */
export async function operatorKubeconfig(cluster: TestCluster, file: string, rbacManifest = RBAC_MANIFEST): Promise<string> {
  cluster.kubectl(['apply', '--server-side', '--field-manager=keyvirt-tests', '-f', rbacManifest]);
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
  /** The last lines of its stdout and stderr, raw: what an assertion on its exit shows. */
  logTail(lines?: number): Promise<string>;
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
    // 'close': after its output is read to the end, which the log file then holds.
    child.once('close', (code, signal) => {
      out.end(() => resolve(code ?? signal ?? 'unknown'));
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
    logTail: async (lines = 40) => (await readFile(options.logFile, 'utf8')).split('\n').slice(-lines - 1).join('\n'),
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

const subresourceListening = z.object({ msg: z.literal('subresource server listening'), port: z.number() });

/**
 * A suite's operator that also serves subresources.keyvirt.io, registered and Available;
 * its endpoint is removed when the operator exits.
 */
export async function startSubresourceOperator(cluster: TestCluster, s: Scratch, suite: string, extraArgs: readonly string[] = []): Promise<OperatorProcess & { subresourcePort: number }> {
  const tls = await subresourceServingCert(cluster.layout);
  const host = cluster.apiServer.host;
  const operator = await startSuiteOperator(cluster, s, suite, [
    '--subresources-address', `${host}:0`, '--subresources-cert-file', tls.certFile, '--subresources-key-file', tls.keyFile,
    '--eviction-webhook-token-file', tls.webhookTokenFile, ...extraArgs,
  ]);
  const id = `${suite}-${s.runId}`;
  let port: number | undefined;
  try {
    const deadline = Date.now() + 60_000;
    while (port === undefined) {
      port = (await operator.logLines()).map((l) => subresourceListening.safeParse(l)).find((p) => p.success)?.data?.port;
      if (port !== undefined) break;
      if (Date.now() > deadline) throw new Error(`the operator's subresource server did not listen within 60 s; log: ${path.join(s.dir, 'operator.log')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await registerSubresourceApi(cluster.layout, id, host, port, tls);
    void operator.exited.then(() => {
      try {
        unregisterSubresourceApi(cluster.layout, id);
      } catch {
        // the cluster may already be gone; the next registration prunes the slice
      }
    });
    await waitSubresourceApiAvailable(cluster.layout);
  } catch (err) {
    // The caller never gets the process: it must not outlive the failure (and keep the suite's process alive).
    await stopOperator(operator);
    throw err;
  }
  return Object.assign(operator, { subresourcePort: port });
}

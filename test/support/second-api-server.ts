// A second kube-apiserver of the local cluster, owned by one benchmark: the same etcd,
// certificates and service-account keys as the shared one, on a loopback port of its
// own, so that the benchmark can restart "the API server" its operator talks to without
// disturbing anyone else's suite. It never joins the `kubernetes` Service's endpoints.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiServerUrl, ports, serviceClusterIpRange } from '../../hack/cluster/layout.ts';
import { aggregationFlags, frontProxyFiles } from '../../hack/cluster/front-proxy-pki.ts';
import type { TestCluster } from './cluster.ts';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export class SecondApiServerError extends Error {
  override readonly name = 'SecondApiServerError';
}

export interface SecondApiServer {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** Stops the process (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and waits until it answers /readyz. */
  start(): Promise<void>;
}

export async function startSecondApiServer(cluster: TestCluster, dir: string): Promise<SecondApiServer> {
  const { layout } = cluster;
  const pki = (name: string): string => path.join(layout.pkiDir, name);
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const args = [
    `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
    `--tls-cert-file=${pki('apiserver.crt')}`,
    `--tls-private-key-file=${pki('apiserver.key')}`,
    `--client-ca-file=${pki('ca.crt')}`,
    '--authorization-mode=RBAC',
    '--allow-privileged=true',
    '--enable-admission-plugins=OwnerReferencesPermissionEnforcement',
    `--service-account-issuer=${apiServerUrl}`,
    `--service-account-key-file=${pki('sa.pub')}`,
    `--service-account-signing-key-file=${pki('sa.key')}`,
    `--service-cluster-ip-range=${serviceClusterIpRange}`,
    '--endpoint-reconciler-type=none',
    // The same aggregation set-up as the shared API server: both run the APIService
    // availability check on the same objects, and a server without it would mark every
    // aggregated API unavailable for both (its probe dials ClusterIPs nobody serves).
    ...aggregationFlags(frontProxyFiles(layout.pkiDir)),
    '--profiling=false',
    '--v=1',
  ];
  const tls = { ca: readFileSync(pki('ca.crt')), cert: readFileSync(pki('admin.crt')), key: readFileSync(pki('admin.key')) };
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const ready = (): Promise<boolean> =>
    new Promise((resolve) => {
      const req = https.get(`${url}/readyz`, { ...tls, timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(res.statusCode === 200 && body === 'ok'));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });
  // A fresh API server answers /readyz before it maps the CRDs' kinds: until then an
  // ownerReference with blockOwnerDeletion to a VirtualMachine is refused by admission.
  // A server-side dry run of such an object tells when it maps them.
  const mapsCrds = (): Promise<boolean> =>
    new Promise((resolve) => {
      const body = JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          generateName: 'restmapping-probe-',
          namespace: 'default',
          ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'probe', uid: '00000000-0000-0000-0000-000000000000', controller: true, blockOwnerDeletion: true }],
        },
      });
      const req = https.request(`${url}/api/v1/namespaces/default/configmaps?dryRun=All`, { ...tls, method: 'POST', timeout: 5000, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 201));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end(body);
    });
  const start = async (): Promise<void> => {
    const log = openSync(path.join(dir, 'kube-apiserver.log'), 'a');
    const proc = spawn(path.join(layout.binDir, 'kube-apiserver'), args, { stdio: ['ignore', log, log] });
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 120_000;
    while (!(await ready()) || !(await mapsCrds())) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new SecondApiServerError(`kube-apiserver exited; log: ${dir}/kube-apiserver.log`);
      if (Date.now() > deadline) throw new SecondApiServerError('kube-apiserver not ready after 120 s');
      await sleep(250);
    }
  };
  const stop = async (): Promise<void> => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  process.once('exit', () => child?.kill('SIGKILL'));
  await start();
  return { url, start, stop };
}

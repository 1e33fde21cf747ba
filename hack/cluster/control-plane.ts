// Brings the control plane up and down: etcd on loopback, kube-apiserver on the
// bridge's gateway address (reachable from the host and from every node and pod
// namespace), kube-controller-manager and kube-scheduler. Each step is idempotent:
// a component already running is left alone.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Logger } from 'pino';
import { assertPortFree, daemonPid, startDaemon, stopDaemon, waitFor } from './daemons.ts';
import type { DaemonSpec } from './daemons.ts';
import { deleteBridge, ensureBridge } from './host-network.ts';
import { apiServerHost, apiServerUrl, ports, serviceClusterIpRange } from './layout.ts';
import type { ClusterLayout } from './layout.ts';
import { ensurePki, writeKubeconfig } from './pki.ts';
import { kubectl } from './kubectl.ts';
import { aggregationFlags, frontProxyFiles, ensureFrontProxyPki } from './front-proxy-pki.ts';
import { liveUsers } from './users.ts';

/** How long the node lifecycle controller waits for a heartbeat before NotReady. */
export const nodeMonitorGracePeriodSeconds = 20;

interface Component {
  readonly spec: DaemonSpec;
  readonly host: string;
  readonly port: number;
  readonly ready: () => Promise<boolean>;
}

function httpGet(url: string, options: https.RequestOptions = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { ...options, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

function adminTls(layout: ClusterLayout): https.RequestOptions {
  return {
    ca: fs.readFileSync(path.join(layout.pkiDir, 'ca.crt')),
    cert: fs.readFileSync(path.join(layout.pkiDir, 'admin.crt')),
    key: fs.readFileSync(path.join(layout.pkiDir, 'admin.key')),
  };
}

function components(layout: ClusterLayout): Component[] {
  const bin = (name: string): string => path.join(layout.binDir, name);
  const pki = (name: string): string => path.join(layout.pkiDir, name);
  const kubeconfigOf = (who: string): string => path.join(layout.runDir, `${who}.kubeconfig`);
  const etcdUrl = `http://127.0.0.1:${ports.etcdClient}`;
  const peerUrl = `http://127.0.0.1:${ports.etcdPeer}`;
  const loopbackHealthz = (port: number) => async (): Promise<boolean> =>
    (await httpGet(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false })).body === 'ok';
  return [
    {
      spec: {
        name: 'etcd', command: bin('etcd'), marker: layout.etcdDataDir,
        args: [
          '--name=keyvirt', `--data-dir=${layout.etcdDataDir}`, `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`, `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=keyvirt=${peerUrl}`,
          '--unsafe-no-fsync=true', '--log-level=warn', '--quota-backend-bytes=4294967296',
        ],
      },
      host: '127.0.0.1', port: ports.etcdClient,
      ready: async () => (await httpGet(`${etcdUrl}/health`)).body.includes('"health":"true"'),
    },
    {
      spec: {
        name: 'kube-apiserver', command: bin('kube-apiserver'), marker: layout.pkiDir,
        args: [
          `--etcd-servers=${etcdUrl}`, `--bind-address=${apiServerHost}`, `--advertise-address=${apiServerHost}`,
          `--secure-port=${ports.apiServer}`, `--cert-dir=${path.join(layout.runDir, 'apiserver-certs')}`,
          `--tls-cert-file=${pki('apiserver.crt')}`, `--tls-private-key-file=${pki('apiserver.key')}`,
          `--client-ca-file=${pki('ca.crt')}`, '--authorization-mode=Node,RBAC', '--allow-privileged=true',
          // Off by default upstream, on in most production clusters: an ownerReference with
          // blockOwnerDeletion needs `update` on the owner's finalizers subresource.
          '--enable-admission-plugins=OwnerReferencesPermissionEnforcement,NodeRestriction',
          // Real kubelets (hack/cluster/real-nodes.ts): the API server presents its own client
          // certificate to them and verifies theirs; nodes are reached at their InternalIP.
          `--kubelet-client-certificate=${pki('apiserver-kubelet-client.crt')}`,
          `--kubelet-client-key=${pki('apiserver-kubelet-client.key')}`,
          `--kubelet-certificate-authority=${pki('ca.crt')}`, '--kubelet-preferred-address-types=InternalIP,Hostname',
          `--service-account-issuer=${apiServerUrl}`, `--service-account-key-file=${pki('sa.pub')}`,
          `--service-account-signing-key-file=${pki('sa.key')}`, `--service-cluster-ip-range=${serviceClusterIpRange}`,
          '--profiling=false', '--v=1',
          // API aggregation (subresources.keyvirt.io, ADR 0066).
          ...aggregationFlags(frontProxyFiles(layout.pkiDir)),
        ],
      },
      host: apiServerHost, port: ports.apiServer,
      ready: async () => (await httpGet(`${apiServerUrl}/readyz`, adminTls(layout))).body === 'ok',
    },
    {
      spec: {
        name: 'kube-controller-manager', command: bin('kube-controller-manager'), marker: kubeconfigOf('controller-manager'),
        args: [
          `--kubeconfig=${kubeconfigOf('controller-manager')}`,
          `--authentication-kubeconfig=${kubeconfigOf('controller-manager')}`,
          `--authorization-kubeconfig=${kubeconfigOf('controller-manager')}`,
          '--bind-address=127.0.0.1', `--secure-port=${ports.controllerManager}`,
          `--cert-dir=${path.join(layout.runDir, 'controller-manager-certs')}`,
          `--cluster-signing-cert-file=${pki('ca.crt')}`, `--cluster-signing-key-file=${pki('ca.key')}`,
          `--root-ca-file=${pki('ca.crt')}`, `--service-account-private-key-file=${pki('sa.key')}`,
          '--use-service-account-credentials=true', '--controllers=*', '--leader-elect=false',
          '--node-monitor-period=2s', `--node-monitor-grace-period=${nodeMonitorGracePeriodSeconds}s`,
          `--service-cluster-ip-range=${serviceClusterIpRange}`, '--v=1',
        ],
      },
      host: '127.0.0.1', port: ports.controllerManager, ready: loopbackHealthz(ports.controllerManager),
    },
    {
      spec: {
        name: 'kube-scheduler', command: bin('kube-scheduler'), marker: kubeconfigOf('scheduler'),
        args: [
          `--kubeconfig=${kubeconfigOf('scheduler')}`, `--authentication-kubeconfig=${kubeconfigOf('scheduler')}`,
          `--authorization-kubeconfig=${kubeconfigOf('scheduler')}`, '--bind-address=127.0.0.1',
          `--secure-port=${ports.scheduler}`, `--cert-dir=${path.join(layout.runDir, 'scheduler-certs')}`,
          '--leader-elect=false', '--v=1',
        ],
      },
      host: '127.0.0.1', port: ports.scheduler, ready: loopbackHealthz(ports.scheduler),
    },
  ];
}

const viewerBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: keyvirt-viewer
  labels: { app.kubernetes.io/part-of: keyvirt-local-cluster }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects:
  - { apiGroup: rbac.authorization.k8s.io, kind: User, name: keyvirt-viewer }
`;

/** Starts whatever part of the control plane is not running and waits until it is ready. */
export async function controlPlaneUp(layout: ClusterLayout, log: Logger): Promise<void> {
  for (const dir of [layout.stateDir, layout.logDir, layout.runDir]) fs.mkdirSync(dir, { recursive: true });
  ensurePki(layout.pkiDir);
  ensureFrontProxyPki(layout.pkiDir);
  writeKubeconfig(layout.pkiDir, 'admin', layout.kubeconfig);
  writeKubeconfig(layout.pkiDir, 'viewer', layout.viewerKubeconfig);
  writeKubeconfig(layout.pkiDir, 'controller-manager', path.join(layout.runDir, 'controller-manager.kubeconfig'));
  writeKubeconfig(layout.pkiDir, 'scheduler', path.join(layout.runDir, 'scheduler.kubeconfig'));
  ensureBridge();
  for (const component of components(layout)) {
    const { spec } = component;
    let pid = daemonPid(layout, spec.name, spec.marker);
    if (pid !== undefined && spec.name === 'kube-apiserver') pid = await restartIfFlagsMissing(layout, log, component, pid);
    if (pid === undefined) {
      await assertPortFree(component.host, component.port, spec.name);
      pid = startDaemon(layout, spec);
      log.info({ component: spec.name, pid }, 'started');
    }
    await waitFor(spec.name, component.ready, {
      timeoutMs: 120_000, pid, logPath: path.join(layout.logDir, `${spec.name}.log`),
    });
    if (spec.name === 'kube-apiserver') {
      kubectl(layout, ['apply', '-f', '-'], viewerBinding);
    }
  }
  await waitForDefaultRoles(layout);
  log.info({ apiServer: apiServerUrl }, 'control plane ready');
}

/**
 * A kube-apiserver started before the aggregation or kubelet flags existed is restarted once with
 * them — only when no other process uses the cluster (the API server is stateless;
 * etcd keeps everything). With other users it is left running and a warning says why
 * aggregated APIs cannot become Available.
 */
async function restartIfFlagsMissing(layout: ClusterLayout, log: Logger, component: Component, pid: number): Promise<number | undefined> {
  let cmdline = '';
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return pid;
  }
  if (cmdline.includes('--requestheader-client-ca-file=') && cmdline.includes('--kubelet-client-certificate=')) return pid;
  const others = liveUsers(layout).filter((p) => p !== process.pid);
  if (others.length > 0) {
    log.warn({ users: others }, 'kube-apiserver runs without the aggregation or kubelet flags and the cluster is in use; aggregated APIs and real nodes stay unavailable until it restarts');
    return pid;
  }
  await stopDaemon(layout, component.spec.name, component.spec.marker);
  log.info({ component: component.spec.name }, 'restarting with the aggregation and kubelet flags');
  return undefined;
}

/**
 * The default `view`/`edit`/`admin` ClusterRoles are created empty and filled by the
 * controller-manager's clusterrole-aggregation controller: until it has run, a user bound
 * to `view` may read nothing. The control plane is ready only once `view` grants reads.
 */
async function waitForDefaultRoles(layout: ClusterLayout): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rules = kubectl(layout, ['get', 'clusterrole', 'view', '-o', 'jsonpath={.rules[*].resources}']);
    if (/\bpods\b/.test(rules)) return;
    if (Date.now() > deadline) throw new Error('the controller-manager did not aggregate the default ClusterRole view within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Stops every control-plane process; with `wipe`, also removes etcd data and certificates. */
export async function controlPlaneDown(layout: ClusterLayout, log: Logger, options: { wipe: boolean }): Promise<void> {
  for (const component of components(layout).reverse()) {
    const { name, marker } = component.spec;
    if (await stopDaemon(layout, name, marker)) log.info({ component: name }, 'stopped');
  }
  deleteBridge();
  if (options.wipe) {
    fs.rmSync(layout.etcdDataDir, { recursive: true, force: true });
  }
}

/** True when every control-plane component is running (not necessarily ready). */
export function controlPlaneRunning(layout: ClusterLayout): boolean {
  return components(layout).every((c) => daemonPid(layout, c.spec.name, c.spec.marker) !== undefined);
}

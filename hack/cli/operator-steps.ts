// The operator part of `npm start` / `npm stop`: the operator runs as a background
// process on the host (logs in .keyvirt/logs/keyvirt-operator.log) under the
// ServiceAccount and ClusterRole it ships with (operator/deploy/rbac.yaml), then a
// sample StorageDomain and VM (examples/vm-local-dev.yaml) are applied: a posix domain
// (the nodes share this machine's file system), so the sample VM can live-migrate; it
// boots the test guest from its disk, a qcow2 overlay over the domain's
// `keyvirt-test-guest` backing image (guest-images.ts). The operator serves
// subresources.keyvirt.io (kubectl keyvirt) and the launcher eviction webhook (kubectl
// drain waits for LiveMigrate VMs to migrate away) on the cluster bridge, registered as
// the suites' operators are (subresource-registration.ts).
import fs from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { StartStep } from '../cluster/cluster.ts';
import { daemonPid, startDaemon, stopDaemon, waitFor } from '../cluster/daemons.ts';
import { apiServerHost, type ClusterLayout } from '../cluster/layout.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { registerSubresourceApi, subresourceServingCertLocked, unregisterSubresourceApi, waitSubresourceApiAvailable } from '../cluster/subresource-registration.ts';
import { installGuestImages } from './guest-images.ts';

const NAME = 'keyvirt-operator';
const MARKER = '--identity=local-operator';
export const OPERATOR_HEALTH_PORT = 18080;
/** The subresources listener's port, on the kube-apiserver's address (the cluster bridge's gateway). */
const SUBRESOURCES_PORT = 18443;
/** The EndpointSlice of `npm start`'s operator behind the subresources Service. */
const SLICE_ID = 'local-operator';
const SAMPLE = 'examples/vm-local-dev.yaml';
/** The two pod policies an earlier version shipped, folded into keyvirt-pods (ADR 0119). */
export const RETIRED_POLICIES = ['validatingadmissionpolicybinding/keyvirt-operator-pods', 'validatingadmissionpolicybinding/keyvirt-reserved-pod-labels',
  'validatingadmissionpolicy/keyvirt-operator-pods', 'validatingadmissionpolicy/keyvirt-reserved-pod-labels'];
/** The sample posix domain's directory: the same on every node of the local cluster. */
const SAMPLE_DOMAIN_PATH = '/var/lib/keyvirt/shared';

function operatorKubeconfigPath(layout: ClusterLayout): string {
  return path.join(layout.stateDir, 'operator.kubeconfig');
}

/** A kubeconfig that authenticates as the operator's ServiceAccount (token valid for a week). */
function writeOperatorKubeconfig(layout: ClusterLayout): string {
  kubectl(layout, ['apply', '--server-side', '--field-manager=keyvirt-local-cluster', '-f', path.join(layout.root, 'operator/deploy/rbac.yaml')]);
  kubectl(layout, ['delete', '--ignore-not-found', ...RETIRED_POLICIES]);
  const token = kubectl(layout, ['create', 'token', 'keyvirt-operator', '-n', 'keyvirt-system', '--duration=168h']).trim();
  const admin = new KubeConfig();
  admin.loadFromFile(layout.kubeconfig);
  const cluster = admin.getCurrentCluster();
  if (cluster === null) throw new Error('the admin kubeconfig has no cluster');
  const ca = cluster.caData ?? (cluster.caFile !== undefined ? fs.readFileSync(cluster.caFile).toString('base64') : undefined);
  const file = operatorKubeconfigPath(layout);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyvirt-local', cluster: { server: cluster.server, ...(ca !== undefined ? { 'certificate-authority-data': ca } : {}) } }],
    users: [{ name: 'keyvirt-operator', user: { token } }],
    contexts: [{ name: 'keyvirt-operator', context: { cluster: 'keyvirt-local', user: 'keyvirt-operator' } }],
    'current-context': 'keyvirt-operator',
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

async function startOperator(layout: ClusterLayout, log: Logger): Promise<void> {
  const kubeconfig = writeOperatorKubeconfig(layout);
  // `npm start`'s steps hold the cluster lock already.
  const tls = await subresourceServingCertLocked(layout);
  const host = apiServerHost;
  await stopDaemon(layout, NAME, MARKER);
  const pid = startDaemon(layout, {
    name: NAME,
    command: process.execPath,
    args: [
      path.join(layout.root, 'operator/src/main.ts'),
      MARKER,
      `--kubeconfig=${kubeconfig}`,
      '--namespace=keyvirt-system',
      `--health-address=127.0.0.1:${OPERATOR_HEALTH_PORT}`,
      `--metrics-address=127.0.0.1:${OPERATOR_HEALTH_PORT}`,
      '--allow-emulation=true',
      // VMs of the end-to-end suites belong to the operators those suites run.
      '--vm-selector=!keyvirt.io/test-run',
      '--storage-domain-selector=!keyvirt.io/test-run',
      `--subresources-address=${host}:${SUBRESOURCES_PORT}`,
      `--subresources-cert-file=${tls.certFile}`,
      `--subresources-key-file=${tls.keyFile}`,
      `--eviction-webhook-token-file=${tls.webhookTokenFile}`,
    ],
    marker: MARKER,
  });
  await waitFor(
    'the operator to be ready',
    async () => {
      try {
        return (await fetch(`http://127.0.0.1:${OPERATOR_HEALTH_PORT}/readyz`)).ok;
      } catch {
        return false;
      }
    },
    { timeoutMs: 60_000, pid, logPath: path.join(layout.logDir, `${NAME}.log`) },
  );
  await registerSubresourceApi(layout, SLICE_ID, host, SUBRESOURCES_PORT, tls);
  await waitSubresourceApiAvailable(layout);
  log.info({ pid, health: `http://127.0.0.1:${OPERATOR_HEALTH_PORT}/healthz`, subresources: `${host}:${SUBRESOURCES_PORT}` }, 'operator running');
}

/** The sample: its domain directory with the guest images as backing images, and the VM booting from its disk. */
function applySample(layout: ClusterLayout, log: Logger): void {
  installGuestImages(layout.root, SAMPLE_DOMAIN_PATH, log);
  kubectl(layout, ['apply', '-f', path.join(layout.root, SAMPLE)]);
  log.info({ sample: SAMPLE }, 'sample StorageDomain and VM applied');
}

/** Waits (a while) for the sample VM to run (and to be live-migratable), and says why when it does not. */
async function awaitSample(layout: ClusterLayout, log: Logger): Promise<void> {
  const deadline = Date.now() + 240_000;
  let phase = '';
  let why = '';
  while (Date.now() < deadline) {
    phase = kubectl(layout, ['get', 'vm', 'dev-1', '-n', 'default', '-o', 'jsonpath={.status.phase}']).trim();
    why = kubectl(layout, ['get', 'vm', 'dev-1', '-n', 'default', '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].message}']).trim();
    if (phase === 'Running') {
      const migratable = kubectl(layout, ['get', 'vm', 'dev-1', '-n', 'default', '-o', 'jsonpath={.status.conditions[?(@.type=="LiveMigratable")].status}']).trim();
      log.info({ vm: 'default/dev-1', liveMigratable: migratable }, 'sample VM is Running');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  log.warn({ vm: 'default/dev-1', phase, why }, 'sample VM is not Running yet (kubectl get vm dev-1 -o yaml)');
}

export const operatorSteps: readonly StartStep[] = [
  { name: 'start the KeyVirt operator', run: startOperator },
  { name: 'apply the sample StorageDomain and VM', run: (layout, log) => Promise.resolve(applySample(layout, log)) },
  { name: 'wait for the sample VM', run: awaitSample },
];

/** Stops the operator started by `npm start` (the VMs' launcher pods go with the nodes). */
export async function stopOperator(layout: ClusterLayout, log: Logger): Promise<void> {
  if (daemonPid(layout, NAME, MARKER) === undefined) return;
  await stopDaemon(layout, NAME, MARKER, 15_000);
  try {
    unregisterSubresourceApi(layout, SLICE_ID);
  } catch {
    // the cluster is gone already; a later registration prunes the slice
  }
  log.info('operator stopped');
}

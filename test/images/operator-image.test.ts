// The operator image (operator/Containerfile) run by podman through testcontainers
// against the shared local cluster, under the operator's own ServiceAccount (the shipped
// RBAC), as a non-root user: it must start, lead on a lease of its own and answer its
// health endpoints. It manages only VMs and storage domains labelled with this run's
// id (there are none), so it leaves other suites' objects alone.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GenericContainer, Wait } from 'testcontainers';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { OPERATOR_NAMESPACE, operatorKubeconfig } from '../operator/operator-process.ts';
import { TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';
import { builtImage, containerOutput, NEVER_PULL, startPodmanService, type PodmanService } from './podman-service.ts';

/** The user the chart runs the operator as (templates/operator.yaml) and the image's USER. */
const OPERATOR_UID = 65532;

void describe('operator image', { timeout: 300_000 }, () => {
  let ref = '';
  let podman: PodmanService | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';

  before(async () => {
    ref = await builtImage('operator');
    cluster = await ensureCluster();
    podman = await startPodmanService();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-operator-image-'));
  });
  after(async () => {
    await podman?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
    cluster?.release();
  });

  void it('runs as a non-root user and answers its health endpoints', async (t) => {
    assert.ok(cluster !== undefined);
    const runId = randomBytes(4).toString('hex');
    const kubeconfig = await operatorKubeconfig(cluster, path.join(dir, 'operator.kubeconfig'));
    // Readable by the image's user alone (mode 0600 as written).
    await chown(kubeconfig, OPERATOR_UID, OPERATOR_UID);
    const output = containerOutput();
    const container = await new GenericContainer(ref)
      .withPullPolicy(NEVER_PULL)
      .withNetworkMode('host')
      .withDroppedCapabilities('ALL')
      .withSecurityOpt('no-new-privileges')
      .withBindMounts([{ source: kubeconfig, target: '/etc/keyvirt/kubeconfig', mode: 'ro' }])
      .withCommand([
        '--kubeconfig', '/etc/keyvirt/kubeconfig',
        '--namespace', OPERATOR_NAMESPACE,
        '--identity', `image-test-${runId}`,
        '--lease-name', `keyvirt-image-test-${runId}`,
        '--health-address', '127.0.0.1:0',
        '--metrics-address', '127.0.0.1:0',
        '--vm-selector', `${TEST_RUN_LABEL}=${runId}`,
        '--storage-domain-selector', `${TEST_RUN_LABEL}=${runId}`,
      ])
      .withLogConsumer((stream) => output.consume(stream))
      .withWaitStrategy(Wait.forLogMessage('health and metrics server listening'))
      .withStartupTimeout(120_000)
      .start();
    try {
      await output.waitFor(/health and metrics server listening.*\n/, 10_000);
      const port = output.logField('health and metrics server listening', 'port');
      assert.equal(typeof port, 'number', `no health port in the operator's log:\n${output.text()}`);
      const base = `http://127.0.0.1:${String(port)}`;
      const healthz = await fetch(`${base}/healthz`);
      assert.equal(healthz.status, 200, await healthz.text());
      // Ready once it leads its own lease and its caches have synced.
      const started = Date.now();
      await eventually('the operator image ready', async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined), 90_000);
      t.diagnostic(`/readyz 200 ${Date.now() - started} ms after /healthz`);
      const id = await container.exec(['id', '-u']);
      assert.equal(id.output.trim(), String(OPERATOR_UID));
    } finally {
      await container.stop({ timeout: 20_000 });
      cluster.kubectl(['delete', 'lease', '-n', OPERATOR_NAMESPACE, `keyvirt-image-test-${runId}`, '--ignore-not-found']);
    }
  });
});

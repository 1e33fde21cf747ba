// End to end on the local cluster: ssh into the Debian 12 guest on its pod IP. The real
// operator (--pod-network node-agent) runs a VM booting the Debian image (a raw copy on a
// hostPath claim) behind masquerade with no ports listed, on a throwaway simulated node
// whose chart node agent prepares the pod network; cloud-init NoCloud gives it a host name
// and a user with this run's SSH key. `ssh` from the host over the cluster bridge to the
// pod IP runs `hostname` and gets that name back; then the same through a ClusterIP Service
// selecting the VM's label (port 22 → 22), dialled only once the ClusterIP routes onto the
// cluster bridge and the host's kube-proxy has written its rules (ADR 0099). Real QEMU (TCG here).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { cloudConfig, debianGuest, dhcpNetworkConfig } from '../support/debian-guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, launcherPods, scratch, type Scratch, TEST_RUN_LABEL, waitVm } from '../operator/vm-fixtures.ts';
import { startChartNodeAgent } from './chart-node-agent.ts';
import { createService, waitServiceRouted, type ServicePort } from './service-rules.ts';

const run = promisify(execFile);
const VM = 'net-ssh';
const HOSTNAME = 'kv-ssh-guest';
const USER = 'kv';
const CLAIM = 'debian-root';
const SSH_PORT: ServicePort = { name: 'ssh', port: 22, targetPort: 22 };

void describe('ssh into the Debian guest on its pod IP (local cluster, real QEMU)', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let node: SimulatedNode | undefined;
  let operator: OperatorProcess | undefined;
  let key: string;
  const clusterScoped: string[][] = [];

  /** The Debian image as a raw disk on a hostPath claim of the scratch namespace. */
  const debianClaim = async (): Promise<void> => {
    const debian = await debianGuest();
    const dir = path.join(s.dir, CLAIM);
    await mkdir(dir, { recursive: true });
    await run('qemu-img', ['convert', '-O', 'raw', debian.image, path.join(dir, 'disk.img')], { timeout: 600_000 });
    const pv = `${s.namespace}-${CLAIM}`;
    apply(cluster, {
      apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name: pv, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: {
        capacity: { storage: '4Gi' }, accessModes: ['ReadWriteMany'], persistentVolumeReclaimPolicy: 'Retain', storageClassName: '',
        hostPath: { path: dir, type: 'Directory' }, claimRef: { namespace: s.namespace, name: CLAIM },
      },
    });
    apply(cluster, {
      apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: CLAIM, namespace: s.namespace },
      spec: { accessModes: ['ReadWriteMany'], storageClassName: '', volumeName: pv, resources: { requests: { storage: '4Gi' } } },
    });
    await eventually('the Debian claim bound', () => (cluster.kubectl(['get', 'pvc', CLAIM, '-n', s.namespace, '-o', 'jsonpath={.status.phase}']) === 'Bound' ? true : undefined), 60_000);
  };

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-ssh');
    key = path.join(s.dir, 'id_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'keyvirt-e2e', '-f', key]);
    await debianClaim();
    node = await cluster.createNode('kvt-ssh');
    clusterScoped.push(...startChartNodeAgent(cluster, `ssh-${s.runId}`, s.namespace, node.name));
    operator = await startSuiteOperator(cluster, s, 'ssh', ['--pod-network', 'node-agent']);
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await s.cleanup();
    if (node !== undefined) await cluster.deleteNode(node.name);
  });

  void it('ssh to the pod IP runs hostname and gets the cloud-init host name', async (t) => {
    const publicKey = (await readFile(`${key}.pub`, 'utf8')).trim();
    apply(cluster, {
      apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine',
      metadata: { name: VM, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId, app: `ssh-${s.runId}` } },
      spec: {
        runStrategy: 'Always', terminationGracePeriodSeconds: 30,
        nodeSelector: { 'kubernetes.io/hostname': node?.name ?? '' },
        tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
        template: {
          cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
          memory: { size: '768Mi' },
          disks: [{ name: 'root', bootOrder: 1, persistentVolumeClaim: { claimName: CLAIM } }],
          interfaces: [{ name: 'default', binding: 'masquerade' }],
          cloudInit: { userData: cloudConfig({ hostname: HOSTNAME, user: USER, sshAuthorizedKeys: [publicKey] }), networkData: dhcpNetworkConfig() },
          guestAgent: true,
          allowEmulation: true,
        },
      },
    });
    const started = Date.now();
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with the guest agent reporting 10.0.2.2',
      (v) => v.status?.phase === 'Running' && (v.status.interfaces?.[0]?.ipAddresses ?? []).includes('10.0.2.2'), 1_500_000);
    const podIp = launcherPods(cluster, s.namespace, VM)[0]?.status?.podIP;
    assert.ok(podIp !== undefined);
    const ssh = (host: string, command: string): string[] =>
      ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', `${USER}@${host}`, command];
    // sshd may start after the agent reports the address, and cloud-init restarts it once
    // more in its config stage (ssh_pwauth rewrites sshd_config): the guest is ready for
    // ssh when cloud-init has finished, which the first session waits for.
    const got = await eventually('ssh answering on the pod IP once cloud-init has finished', async () => {
      const r = await run('ssh', ssh(podIp, 'cloud-init status --wait >/dev/null 2>&1; cloud-init status; hostname'), { timeout: 300_000 }).catch(() => undefined);
      return r?.stdout.trim() || undefined;
    }, 600_000, 3000);
    assert.deepEqual(got.split('\n').map((l) => l.trim()), ['status: done', HOSTNAME], `cloud-init status and host name: ${got}`);
    t.diagnostic(`ssh ${USER}@${podIp} → cloud-init done, hostname ${HOSTNAME} ${Date.now() - started} ms after apply (accel=tcg)`);

    // The same through a Service selecting the VM's label (copied onto its launcher pod).
    const clusterIp = createService(cluster, s.namespace, 'ssh', { app: `ssh-${s.runId}` }, SSH_PORT);
    await waitServiceRouted(cluster, { namespace: s.namespace, name: 'ssh', clusterIp, port: SSH_PORT }, podIp, 120_000);
    const viaService = (await run('ssh', ssh(clusterIp, 'hostname'), { timeout: 60_000 })).stdout.trim();
    assert.equal(viaService, HOSTNAME);
    t.diagnostic(`ssh ${USER}@${clusterIp} (Service ssh → ${podIp}:22) hostname → ${viaService} (accel=tcg)`);
  });
});

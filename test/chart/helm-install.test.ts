// `helm install` of charts/keyvirt into the local cluster, end to end: the operator
// Deployment and the node agent DaemonSet become Ready on the suite's own nodes (from
// the images the nodes resolve); the small VM of examples/ (its root disk a claim
// holding the test guest's boot disk) reaches Running with guest-agent information in
// a namespace that enforces Pod Security `baseline`; `helm upgrade` with a changed value
// rolls the operator while the VM keeps its launcher pod and its guest its boot; after
// the VM is deleted, `helm uninstall` leaves the CRDs and what the README names, nothing
// else. How the release keeps out of the other suites' way: docs/adr/0083.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { VirtualMachine, type VirtualMachineInput } from '@keyvirt/crds';
import { parse } from 'yaml';
import { z } from 'zod';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { diskClaim } from '../support/boot-disk.ts';
import { readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { getVm, launcherPods, scratch, type Scratch, waitVm } from '../operator/vm-fixtures.ts';
import { chartDir, helm, HelmError, helmOk, objectsWhere, releaseValues, TEST_RUN_LABEL, writeValues } from './helm-install-release.ts';
import { podDiagnostics } from '../support/pod-diagnostics.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const EXAMPLE = path.join(repo, 'examples/vm-small.yaml');
const VM = 'small-1';

const workload = z.object({
  status: z.object({
    readyReplicas: z.number().optional(),
    updatedReplicas: z.number().optional(),
    replicas: z.number().optional(),
    numberReady: z.number().optional(),
    desiredNumberScheduled: z.number().optional(),
    observedGeneration: z.number().optional(),
  }).optional(),
  metadata: z.object({ generation: z.number() }),
});

const podNames = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string(), uid: z.string() }), status: z.object({ phase: z.string().optional() }).optional() })) });

/** The example VM, moved into the suite's namespace and onto its nodes, with a blank second disk for the guest's counter records. */
function exampleVm(s: Scratch): VirtualMachineInput {
  const example = VirtualMachine.parse(parse(readFileSync(EXAMPLE, 'utf8')));
  assert.equal(example.metadata.name, VM);
  return {
    ...example,
    metadata: { name: VM, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: {
      ...example.spec,
      nodeSelector: { [TEST_RUN_LABEL]: s.runId },
      tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
      template: {
        ...example.spec.template,
        // No hardware KVM on this machine's nodes: TCG.
        allowEmulation: true,
        disks: [...example.spec.template.disks, { name: 'records', persistentVolumeClaim: { claimName: `${VM}-records` } }],
        // Without the node agent's pod network (helm-install-release.ts) a port forward is
        // QEMU's user-mode hostfwd in the pod, and a launcher without capabilities cannot
        // bind port 22 there: no forwarded port.
        interfaces: example.spec.template.interfaces.map((nic) => ({ ...nic, ports: undefined })),
      },
    },
  };
}

describe('helm install keyvirt charts/keyvirt', { timeout: 30 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let release: string;
  let releaseNs: string;
  let valuesFile: string;
  let recordsImage: string;
  const nodes: string[] = [];
  /** The later steps need the release: without it they fail at once instead of waiting out their timeouts. */
  let installed = false;
  const needRelease = (): void => assert.ok(installed, 'the release did not install (see the first test)');

  const operatorPods = (): z.infer<typeof podNames>['items'] =>
    podNames.parse(JSON.parse(cluster.kubectl(['get', 'pods', '-n', releaseNs, '-l', 'app.kubernetes.io/name=keyvirt-operator', '-o', 'json']))).items;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-helm');
    release = `kv-helm-${s.runId}`;
    releaseNs = `kv-helm-sys-${s.runId}`;
    // The VM namespace: Pod Security baseline, enforced.
    cluster.kubectl(['label', 'namespace', s.namespace, 'pod-security.kubernetes.io/enforce=baseline', 'pod-security.kubernetes.io/enforce-version=latest']);
    for (const i of [1, 2]) nodes.push((await cluster.createNode(`kvh${String(i)}`, { labels: { [TEST_RUN_LABEL]: s.runId } })).name);
    const pvLabels = { [TEST_RUN_LABEL]: s.runId };
    await diskClaim(cluster, { namespace: s.namespace, claimName: `${VM}-root`, volumeDir: path.join(s.dir, 'root'), labels: pvLabels, boot: guest });
    recordsImage = await diskClaim(cluster, { namespace: s.namespace, claimName: `${VM}-records`, volumeDir: path.join(s.dir, 'records'), labels: pvLabels });
    valuesFile = writeValues(s.dir, releaseValues({
      release, namespace: releaseNs, runId: s.runId, vmNamespaces: [s.namespace], apiServer: cluster.apiServer,
      // Claims are PersistentVolumes here: no launcher hostPath but /dev/kvm.
      hostPathPattern: `^${s.dir}/`,
    }));
  });

  after(async () => {
    if (cluster === undefined) return;
    const best = (f: () => unknown): void => {
      try {
        f();
      } catch {
        // best effort: every name is unique to this run
      }
    };
    if (release !== undefined) best(() => helm(cluster, ['uninstall', release, '-n', releaseNs, '--wait', '--timeout', '2m']));
    if (s !== undefined) await s.cleanup();
    best(() => cluster.kubectl(['delete', 'namespace', releaseNs, '--wait=false', '--ignore-not-found']));
    for (const n of nodes) await cluster.deleteNode(n).catch(() => undefined);
    cluster.release();
  });

  test('install: the operator Deployment and the node agent DaemonSet become Ready on the suite nodes', () => {
    let out: string;
    try {
      out = helmOk(cluster, ['install', release, chartDir, '-n', releaseNs, '--create-namespace', '-f', valuesFile, '--wait', '--timeout', '8m']);
    } catch (err) {
      // What kept the release from Ready, before the after hook removes its nodes.
      throw err instanceof HelmError ? new HelmError(`${err.message}\n${podDiagnostics(cluster, releaseNs)}`) : err;
    }
    assert.match(out, /STATUS: deployed/);
    const deployment = workload.parse(JSON.parse(cluster.kubectl(['get', 'deployment', 'keyvirt-operator', '-n', releaseNs, '-o', 'json'])));
    assert.equal(deployment.status?.readyReplicas, 1);
    const daemonSet = workload.parse(JSON.parse(cluster.kubectl(['get', 'daemonset', 'keyvirt-node-agent', '-n', releaseNs, '-o', 'json'])));
    assert.equal(daemonSet.status?.desiredNumberScheduled, nodes.length, 'one node agent per suite node, none elsewhere');
    assert.equal(daemonSet.status?.numberReady, nodes.length);
    const where = cluster.kubectl(['get', 'pods', '-n', releaseNs, '-o', 'jsonpath={range .items[*]}{.spec.nodeName}{"\\n"}{end}']).split('\n').filter((n) => n !== '');
    for (const n of where) assert.ok(nodes.includes(n), `pod of the release on ${n}, outside the suite's nodes`);
    installed = true;
  });

  test('a VM from examples/ runs in a namespace enforcing Pod Security baseline, with guest-agent information', async () => {
    needRelease();
    // The namespace really enforces: a hostPath pod is refused there.
    const refused = (() => {
      try {
        cluster.kubectl(['run', 'hostpath-probe', '-n', s.namespace, '--image=busybox', '--restart=Never', '--overrides',
          JSON.stringify({ spec: { volumes: [{ name: 'h', hostPath: { path: '/' } }], containers: [{ name: 'hostpath-probe', image: 'busybox', volumeMounts: [{ name: 'h', mountPath: '/h' }] }] } })]);
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    assert.match(refused, /violates PodSecurity "baseline:latest".*hostPath/);
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify(exampleVm(s)));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with guest-agent information', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined, 600_000);
    assert.ok(nodes.includes(vm.status?.nodeName ?? ''), `VM on ${String(vm.status?.nodeName)}`);
    assert.match(JSON.stringify(vm.status?.guestOSInfo), /Debian/i);
    const pods = launcherPods(cluster, s.namespace, VM);
    assert.equal(pods.length, 1);
    assert.equal(pods[0]?.status?.phase, 'Running');
  });

  test('helm upgrade with a changed value rolls the operator; the VM keeps its launcher and its boot', async () => {
    needRelease();
    const before = getVm(cluster, s.namespace, VM);
    const launcherUid = launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid;
    assert.ok(launcherUid !== undefined);
    const bootsBefore = [...new Set((await readDiskRecords(recordsImage)).map((r) => r.bootId))];
    assert.equal(bootsBefore.length, 1, `one boot on the records disk before the upgrade: ${bootsBefore.join(', ')}`);
    const oldOperators = operatorPods().map((p) => p.metadata.name);
    const out = helmOk(cluster, ['upgrade', release, chartDir, '-n', releaseNs, '-f', valuesFile, '--set', 'operator.logLevel=debug', '--wait', '--timeout', '8m']);
    assert.match(out, /STATUS: deployed/);
    assert.match(out, /REVISION: 2/);
    await eventually('the old operator pod gone and a new one Ready', () => {
      const now = operatorPods();
      return now.length === 1 && !oldOperators.includes(now[0]?.metadata.name ?? '') && now[0]?.status?.phase === 'Running' ? true : undefined;
    }, 180_000, 1000);
    // The new operator leads and sees the VM: its status is rewritten by it (a new observation of the agent).
    const settled = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'still Running after the upgrade', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined, 120_000);
    assert.equal(settled.status?.launcherPod, before?.status?.launcherPod);
    assert.equal(launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid, launcherUid, 'the same launcher pod');
    const countBefore = Math.max(...(await readDiskRecords(recordsImage)).map((r) => r.n));
    await eventually('the guest counting on', async () => (Math.max(...(await readDiskRecords(recordsImage)).map((r) => r.n)) > countBefore + 5 ? true : undefined), 60_000, 1000);
    const bootsAfter = [...new Set((await readDiskRecords(recordsImage)).map((r) => r.bootId))];
    assert.deepEqual(bootsAfter, bootsBefore, 'the same guest boot');
  });

  test('helm uninstall leaves the CRDs and nothing of the release but its leader Lease', async () => {
    needRelease();
    cluster.kubectl(['delete', 'virtualmachine', VM, '-n', s.namespace, '--wait=true', '--timeout=180s']);
    await eventually('the launcher pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 120_000, 1000);
    const out = helmOk(cluster, ['uninstall', release, '-n', releaseNs, '--wait', '--timeout', '3m']);
    assert.match(out, /uninstalled/);
    // The release's pods terminate after helm has deleted their owners (a grace period each).
    const labelled = (): string[] => objectsWhere(cluster, { labelSelector: `app.kubernetes.io/instance=${release}` });
    await eventually('the release\'s pods gone', () => (labelled().some((o) => /\/Pod\//.test(o)) ? undefined : true), 180_000, 2000);
    assert.deepEqual(labelled(), [], 'no object labelled with the release');
    const inReleaseNs = objectsWhere(cluster, { namespace: releaseNs });
    // What the README says stays: the namespace's own ServiceAccount and root CA, and the operator's leader Lease.
    assert.deepEqual(inReleaseNs, [
      `${releaseNs}/ConfigMap/kube-root-ca.crt`,
      `${releaseNs}/Lease/keyvirt-operator`,
      `${releaseNs}/ServiceAccount/default`,
    ]);
    for (const crd of ['virtualmachines', 'storagedomains', 'virtualmachinemigrations', 'migrationpolicies']) {
      assert.match(cluster.kubectl(['get', 'crd', `${crd}.keyvirt.io`, '-o', 'name']), new RegExp(`${crd}\\.keyvirt\\.io`));
    }
    assert.equal(cluster.kubectl(['get', 'networkpolicy', '-n', s.namespace, '-o', 'name']).trim(), '', 'the launcher NetworkPolicy went with the release');
  });
});

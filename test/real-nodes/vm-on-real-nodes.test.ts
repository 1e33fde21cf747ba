// KeyVirt on real kubelet + containerd nodes (real-1, real-2), end to end: the chart is
// installed with the images hack/images builds (operator Deployment of two replicas, one
// per real node; node agent DaemonSet on both), then one HA VM — its root disk a claim
// holding the test guest's boot disk, a blank disk on a posix StorageDomain (the host
// directory every node sees) for its counter records and its storage lease — goes
// through its life: Running with guest-agent information → stopped → started again
// (a new boot) → `helm upgrade` rolls the operators (the same launcher and boot) → live-migrated to the other real node (the same boot) → the power loss
// of its node (kubelet, containerd and every container of the node killed): it runs
// again on the other real node, never twice (the double-run checker) → deleted → `helm
// uninstall` leaves no object of the release. Real
// QEMU under TCG (no usable hardware KVM here). Design: docs/adr/0084.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { StorageDomain, VirtualMachineMigration, type VirtualMachine, type VirtualMachineInput } from '@keyvirt/crds';
import { startRealNode, stopRealNode } from '../../hack/cluster/real-nodes.ts';
import { eventually, type TestCluster } from '../support/cluster.ts';
import { diskClaim } from '../support/boot-disk.ts';
import { describeDoubleRuns, DoubleRunChecker } from '../support/double-run-checker.ts';
import { readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { ensureRealNodes, realNodeLabel, realNodeToleration, type RealNodes } from '../support/real-nodes.ts';
import { condition, getVm, launcherPods, scratch, type Scratch, waitVm } from '../operator/vm-fixtures.ts';
import { chartDir, helm, helmOk, objectsWhere, releaseValues, TEST_RUN_LABEL, writeValues } from '../chart/helm-install-release.ts';
import { keyvirtImages } from './keyvirt-images.ts';

const VM = 'real-1-vm';

/** Running, its agent connected and Ready. */
function guestUp(vm: VirtualMachine): boolean {
  return vm.status?.phase === 'Running' && vm.status.guestOSInfo !== undefined && condition(vm, 'AgentConnected')?.status === 'True' && condition(vm, 'Ready')?.status === 'True';
}

async function bootsOn(disk: string): Promise<string[]> {
  return [...new Set((await readDiskRecords(disk)).map((r) => r.bootId))];
}

describe('KeyVirt on real kubelet nodes', { timeout: 45 * 60_000 }, () => {
  let real: RealNodes;
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let release: string;
  let releaseNs: string;
  let domain: string;
  let records: string;
  let nodeNames: string[] = [];
  let checker: DoubleRunChecker | undefined;
  let valuesFile = '';
  const log = pino({ level: process.env.KEYVIRT_LOG_LEVEL ?? 'warn', base: { suite: 'real-nodes-e2e' } });

  const vmRef = (): { namespace: string; name: string } => ({ namespace: s.namespace, name: VM });
  const patchVm = (patch: unknown): void => {
    cluster.kubectl(['patch', 'virtualmachine', VM, '-n', s.namespace, '--type=merge', '-p', JSON.stringify(patch)]);
  };

  before(async () => {
    const images = keyvirtImages();
    real = await ensureRealNodes(images.archives);
    cluster = real.cluster;
    nodeNames = real.nodes.map((n) => n.name);
    guest = await testGuest();
    s = await scratch(cluster, 'kv-real');
    release = `kv-real-${s.runId}`;
    releaseNs = `kv-real-sys-${s.runId}`;
    domain = `sd-${s.runId}-real`;
    const shared = path.join(s.dir, 'shared');
    mkdirSync(path.join(shared, 'templates'), { recursive: true });
    const labels = { [TEST_RUN_LABEL]: s.runId };
    await diskClaim(cluster, { namespace: s.namespace, claimName: `${VM}-root`, volumeDir: path.join(s.dir, 'root'), labels, boot: guest });
    const values = releaseValues({
      release, namespace: releaseNs, runId: s.runId, vmNamespaces: [s.namespace], apiServer: cluster.apiServer,
      hostPathPattern: `^${s.dir}/`,
      images: images.values,
      placement: { nodeSelector: { [realNodeLabel]: 'true' }, tolerations: [realNodeToleration] },
      operatorReplicas: 2,
    });
    valuesFile = writeValues(s.dir, values);
    helmOk(cluster, ['install', release, chartDir, '-n', releaseNs, '--create-namespace', '-f', valuesFile, '--wait', '--timeout', '10m']);
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain',
      metadata: { name: domain, labels },
      spec: { type: 'posix', posix: { path: shared }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } },
    }));
    await eventually(`StorageDomain ${domain} Active`, () => {
      const out = cluster.kubectl(['get', 'storagedomain', domain, '-o', 'json', '--ignore-not-found']);
      return out.trim() !== '' && StorageDomain.parse(JSON.parse(out)).status?.phase === 'Active' ? true : undefined;
    }, 300_000, 1000);
    records = path.join(shared, 'images', s.namespace, VM, 'records.raw');
  });

  after(async () => {
    if (cluster === undefined) return;
    await checker?.stop();
    const best = (f: () => unknown): void => {
      try {
        f();
      } catch {
        // best effort: every name is unique to this run
      }
    };
    best(() => cluster.kubectl(['delete', 'virtualmachine', VM, '-n', s.namespace, '--wait=true', '--timeout=120s', '--ignore-not-found']));
    best(() => cluster.kubectl(['delete', 'storagedomain', domain, '--wait=true', '--timeout=120s', '--ignore-not-found']));
    best(() => helm(cluster, ['uninstall', release, '-n', releaseNs, '--wait', '--timeout', '3m']));
    best(() => cluster.kubectl(['patch', 'storagedomain', domain, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']));
    best(() => cluster.kubectl(['delete', 'pv', `keyvirt-sd-${domain}`, '--ignore-not-found', '--wait=false']));
    await s.cleanup();
    best(() => cluster.kubectl(['delete', 'namespace', releaseNs, '--wait=false', '--ignore-not-found']));
    // A real node this suite powered off comes back for the next suite.
    for (const name of nodeNames) await startRealNode(cluster.layout, name, log).catch(() => undefined);
    cluster.release();
  });

  test('the chart runs the operator on both real nodes and a node agent on each', () => {
    const where = cluster.kubectl(['get', 'pods', '-n', releaseNs, '-o', 'jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.spec.nodeName} {.status.phase}{"\\n"}{end}'])
      .split('\n').filter((l) => l !== '').sort();
    const want = nodeNames.flatMap((n) => [`keyvirt-node-agent ${n} Running`, `keyvirt-operator ${n} Running`]).sort();
    assert.deepEqual(where.filter((l) => !l.includes('storage')), want);
  });

  test('lifecycle: Running with guest-agent information → stopped → started (a new boot)', async () => {
    const vm: VirtualMachineInput = {
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachine',
      metadata: { name: VM, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: {
        runStrategy: 'Always',
        terminationGracePeriodSeconds: 30,
        highAvailability: { enabled: true, priority: 50 },
        nodeSelector: { [realNodeLabel]: 'true' },
        tolerations: [realNodeToleration],
        template: {
          cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
          memory: { size: '256Mi' },
          disks: [
            { name: 'root', bootOrder: 1, persistentVolumeClaim: { claimName: `${VM}-root` } },
            { name: 'records', storageDomain: { name: domain, size: '64Mi', format: 'raw' } },
          ],
          interfaces: [{ name: 'default', binding: 'masquerade' }],
          guestAgent: true,
          allowEmulation: true,
        },
      },
    };
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify(vm));
    const running = await waitVm(cluster, vmRef(), 'Running with its agent on a real node', (v) => guestUp(v) && nodeNames.includes(v.status?.nodeName ?? ''), 600_000);
    assert.match(JSON.stringify(running.status?.guestOSInfo), /Debian/i);
    await eventually('records on the domain disk', async () => ((await bootsOn(records)).length === 1 ? true : undefined), 120_000, 1000);
    const firstBoot = await bootsOn(records);

    // An HA VM runs Always (the CRD's rule): stopping it turns HA off in the same patch.
    patchVm({ spec: { runStrategy: 'Halted', highAvailability: { enabled: false, priority: 50 } } });
    await waitVm(cluster, vmRef(), 'Stopped', (v) => v.status?.phase === 'Stopped', 240_000);
    await eventually('the launcher pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 120_000, 1000);

    patchVm({ spec: { runStrategy: 'Always', highAvailability: { enabled: true, priority: 50 } } });
    await waitVm(cluster, vmRef(), 'Running again', (v) => guestUp(v) && nodeNames.includes(v.status?.nodeName ?? ''), 600_000);
    // Each boot writes its ring from the start of the disk, over the records of the one before.
    await eventually('a new boot writing records', async () => ((await bootsOn(records)).some((b) => !firstBoot.includes(b)) ? true : undefined), 120_000, 1000);
  });

  test('helm upgrade with a changed value rolls both operator replicas; the VM keeps its launcher pod and its boot', async () => {
    const operatorPods = (): { name: string; ready: boolean }[] =>
      (JSON.parse(cluster.kubectl(['get', 'pods', '-n', releaseNs, '-l', `app.kubernetes.io/name=keyvirt-operator,app.kubernetes.io/instance=${release}`, '-o', 'json'])) as { items: { metadata: { name: string; deletionTimestamp?: string }; status?: { conditions?: { type: string; status: string }[] } }[] }).items
        .filter((p) => p.metadata.deletionTimestamp === undefined)
        .map((p) => ({ name: p.metadata.name, ready: p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true }));
    const oldOperators = operatorPods().map((p) => p.name);
    assert.equal(oldOperators.length, 2, `two operator replicas before the upgrade: ${oldOperators.join(', ')}`);
    const launcherUid = launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid;
    assert.ok(launcherUid !== undefined);
    const bootsBefore = await bootsOn(records);
    const out = helmOk(cluster, ['upgrade', release, chartDir, '-n', releaseNs, '-f', valuesFile, '--set', 'operator.logLevel=debug', '--wait', '--timeout', '8m']);
    assert.match(out, /REVISION: 2/);
    await eventually('two new operator pods Ready', () => {
      const now = operatorPods();
      return now.length === 2 && now.every((p) => p.ready && !oldOperators.includes(p.name)) ? true : undefined;
    }, 300_000, 1000);
    await waitVm(cluster, vmRef(), 'Running after the upgrade', (v) => guestUp(v), 120_000);
    assert.equal(launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid, launcherUid, 'the same launcher pod');
    const last = Math.max(...(await readDiskRecords(records)).map((r) => r.n));
    await eventually('the guest counting on', async () => (Math.max(...(await readDiskRecords(records)).map((r) => r.n)) > last + 5 ? true : undefined), 60_000, 1000);
    // The ring may still hold an earlier boot's records before, overwritten since: no new boot is what counts.
    const bootsAfter = await bootsOn(records);
    assert.ok(bootsAfter.every((b) => bootsBefore.includes(b)), `the same guest boot (${bootsBefore.join(', ')} → ${bootsAfter.join(', ')})`);
  });

  test('live migration to the other real node keeps the boot', async () => {
    const before = getVm(cluster, s.namespace, VM);
    const source = before?.status?.nodeName ?? '';
    const target = nodeNames.find((n) => n !== source);
    assert.ok(target !== undefined, `a second real node besides ${source}`);
    const bootsBefore = await bootsOn(records);
    const migration = `${VM}-to-${target}`;
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachineMigration',
      metadata: { name: migration, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { vmName: VM, targetNodeSelector: { 'kubernetes.io/hostname': target } },
    }));
    const done = await eventually(`migration ${migration} finished`, () => {
      const m = VirtualMachineMigration.parse(JSON.parse(cluster.kubectl(['get', 'virtualmachinemigration', migration, '-n', s.namespace, '-o', 'json'])));
      return m.status?.phase === 'Succeeded' || m.status?.phase === 'Failed' || m.status?.phase === 'Cancelled' ? m : undefined;
    }, 600_000, 1000);
    if (done.status?.phase !== 'Succeeded') {
      for (const pod of [done.status?.sourcePod, done.status?.targetPod]) {
        if (pod === undefined) continue;
        try {
          writeFileSync(`/tmp/kv-realnode-${pod}.log`, cluster.kubectl(['logs', pod, '-n', s.namespace, '--all-containers']));
        } catch { /* gone */ }
      }
    }
    assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status));
    const after = await waitVm(cluster, vmRef(), `Running on ${target}`, (v) => guestUp(v) && v.status?.nodeName === target, 120_000);
    assert.notEqual(after.status?.launcherPod, before?.status?.launcherPod);
    const last = Math.max(...(await readDiskRecords(records)).map((r) => r.n));
    await eventually('the guest counting on after the hand-over', async () => (Math.max(...(await readDiskRecords(records)).map((r) => r.n)) > last + 5 ? true : undefined), 60_000, 1000);
    const bootsAfter = await bootsOn(records);
    assert.ok(bootsAfter.every((b) => bootsBefore.includes(b)), `no new boot: the migrated guest did not reboot (${bootsBefore.join(', ')} → ${bootsAfter.join(', ')})`);
    // (No process-level double-run check here: during a live migration the target QEMU
    // exists beside the source by design, paused until the hand-over; the guest's own
    // records above show one boot counting on.)
  });

  test('power loss of the VM\'s real node: it runs again on the other one, never twice', async (t) => {
    const before = getVm(cluster, s.namespace, VM);
    const dead = before?.status?.nodeName ?? '';
    assert.ok(nodeNames.includes(dead));
    const bootsBefore = await bootsOn(records);
    checker = DoubleRunChecker.start({ namespace: s.namespace, name: VM, disk: records });
    const crashed = Date.now();
    // Kubelet, every container and containerd killed: nothing of the node answers any more.
    await stopRealNode(cluster.layout, dead, log, { deleteObject: false });
    const moved = await waitVm(cluster, vmRef(), 'running on the other real node', (v) => guestUp(v) && v.status?.nodeName !== dead && nodeNames.includes(v.status?.nodeName ?? ''), 600_000);
    t.diagnostic(`power loss of ${dead} → running with its agent on ${moved.status?.nodeName ?? '?'} after ${Date.now() - crashed} ms (TCG)`);
    await eventually('a new boot writing records', async () => ((await bootsOn(records)).some((b) => !bootsBefore.includes(b)) ? true : undefined), 120_000, 1000);
    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    await startRealNode(cluster.layout, dead, log);
  });

  test('delete: the VM and its launcher pod go', async () => {
    cluster.kubectl(['delete', 'virtualmachine', VM, '-n', s.namespace, '--wait=true', '--timeout=180s']);
    await eventually('no launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 120_000, 1000);
    assert.equal(getVm(cluster, s.namespace, VM), undefined);
  });

  test('helm uninstall removes every object of the release from the real nodes', async () => {
    const out = helmOk(cluster, ['uninstall', release, '-n', releaseNs, '--wait', '--timeout', '3m']);
    assert.match(out, /uninstalled/);
    const labelled = (): string[] => objectsWhere(cluster, { labelSelector: `app.kubernetes.io/instance=${release}` });
    await eventually('the release\'s pods gone', () => (labelled().some((o) => /\/Pod\//.test(o)) ? undefined : true), 180_000, 2000);
    assert.deepEqual(labelled(), [], 'no object labelled with the release');
  });
});

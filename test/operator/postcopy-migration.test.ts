// End to end on the local cluster: a post-copy live migration between two hardened
// launcher pods (no capabilities, no_new_privs: docs/adr/0108), made possible by the node
// agent — run as the chart renders it, in a pod on each node — setting
// vm.unprivileged_userfaultfd=1 and labelling the node keyvirt.io/postcopy=true
// (docs/adr/0057). The migration is `kubectl apply`'d with policy overrides that force the
// switch to post-copy: a memory-dirtying guest, a bandwidth cap, a downtime schedule of
// tiny steps raised after every stalled iteration. Before any node is labelled, the same
// migration runs pre-copy only and says why (PostCopyUnavailable). Two throwaway nodes
// run the current node simulator. Real QEMU (TCG here), real launchers, the real operator.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import type { VirtualMachineMigration } from '@keyvirt/crds';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { getMigration, invariantViolations, LauncherObserver, migrationManifest, vmToken } from './migration-observer.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, eventsFor, launcherPods, pvcDisk, scratch, type Scratch, testVm, waitVm } from './vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const SYSCTL = '/proc/sys/vm/unprivileged_userfaultfd';
const VM = 'pc-1';
/** Rewrites a 64 MiB working set as fast as the vCPU allows (the test guest's `dirty`). */
const DIRTYING_USER_DATA = '#!/bin/sh\nexec /bin/dirty 100000 64 >/dev/console 2>&1\n';
/** Pre-copy cannot converge against the dirtying guest: the schedule runs out, post-copy takes over. */
const FORCE_POST_COPY = {
  allowPostCopy: true,
  bandwidthPerMigration: '32Mi',
  downtime: { stepsMs: [1, 2], stallIterations: 1 },
};

const Rendered = z.object({ kind: z.string(), metadata: z.object({ name: z.string() }).loose() }).loose();
const DaemonSet = z.object({ spec: z.object({ template: z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()) }).loose(), spec: z.record(z.string(), z.unknown()) }) }) });
const NodeMeta = z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()).default({}), annotations: z.record(z.string(), z.string()).default({}) }) });

function running(vm: { status?: { phase?: string; guestOSInfo?: unknown } | undefined }): boolean {
  return vm.status?.phase === 'Running' && vm.status.guestOSInfo !== undefined;
}

void describe('post-copy migration between hardened launcher pods', { timeout: 30 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess | undefined;
  let nodes: SimulatedNode[] = [];
  let image: string;
  let token: string;
  let boot: string | undefined;
  let sysctlBefore: string;
  let release: string;
  const agentPods: string[] = [];
  const clusterScoped: string[][] = [];

  const helmTemplate = (): z.infer<typeof Rendered>[] => {
    const helm = path.join(repoRoot, 'hack/.cache/k8s/bin/helm');
    const out = execFileSync(helm, [
      'template', release, path.join(repoRoot, 'charts/keyvirt'), '--namespace', s.namespace, '--kube-version', '1.34.0',
      '--set', 'nodeAgent.postCopy.enableUnprivilegedUserfaultfd=true', '--set', 'nodeAgent.intervalSeconds=2',
      '--show-only', 'templates/node-agent.yaml', '--show-only', 'templates/admission-policy.yaml',
    ], { encoding: 'utf8' });
    return out.split(/^---$/m).map((doc) => doc.trim()).filter((doc) => doc !== '')
      .map((doc) => Rendered.parse(JSON.parse(cluster.kubectl(['create', '--dry-run=client', '-o', 'json', '-f', '-'], doc))))
      // Of the admission policies, the node agent's own (it may change only its own node).
      .filter((doc) => !doc.kind.startsWith('ValidatingAdmissionPolicy') || doc.metadata.name === `${release}-node-agent-own-node`)
      .filter((doc) => doc.kind !== 'ConfigMap');
  };

  /** The chart's node agent: its ServiceAccount, RBAC and admission policy, and its DaemonSet's pod pinned to each node. */
  const startNodeAgents = (): void => {
    for (const doc of helmTemplate()) {
      if (doc.kind === 'DaemonSet') {
        const template = DaemonSet.parse(doc).spec.template;
        for (const node of nodes) {
          const name = `node-agent-${node.name}`;
          apply(cluster, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: s.namespace, labels: template.metadata.labels }, spec: { ...template.spec, nodeName: node.name } });
          agentPods.push(name);
        }
      } else {
        apply(cluster, doc);
        if (doc.kind.startsWith('ClusterRole') || doc.kind.startsWith('ValidatingAdmissionPolicy')) clusterScoped.push([doc.kind.toLowerCase(), doc.metadata.name]);
      }
    }
  };

  const nodeMeta = (name: string): z.infer<typeof NodeMeta>['metadata'] => NodeMeta.parse(JSON.parse(cluster.kubectl(['get', 'node', name, '-o', 'json']))).metadata;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    sysctlBefore = (await readFile(SYSCTL, 'utf8')).trim();
    s = await scratch(cluster, 'kv-e2e-pc');
    release = `pc-${s.runId}`;
    nodes = await Promise.all([cluster.createNode('kvt-pca'), cluster.createNode('kvt-pcb')]);
    image = await pvcDisk(cluster, s, 'pc-1-data');
    operator = await startSuiteOperator(cluster, s, 'postcopy');
    const [first] = nodes;
    assert.ok(first !== undefined);
    const vm = testVm(s, guest, { name: VM, claimName: 'pc-1-data' });
    vm.spec.nodeSelector = { 'kubernetes.io/hostname': first.name };
    vm.spec.tolerations = [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }];
    vm.spec.template.cloudInit = { userData: DIRTYING_USER_DATA };
    apply(cluster, vm);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the first node', running, 300_000);
    token = vmToken(cluster, s.namespace, VM);
    await eventually('the guest writing to its disk', async () => ((await readDiskRecords(image)).length > 3 ? true : undefined), 120_000);
    [boot] = await bootIds();
  });

  const bootIds = async (): Promise<string[]> => [...new Set((await readDiskRecords(image)).map((r) => r.bootId))];
  const runningOn = (): { pod: string; node: string } => {
    const pods = launcherPods(cluster, s.namespace, VM).filter((p) => p.status?.phase === 'Running' && p.metadata.deletionTimestamp === undefined);
    assert.equal(pods.length, 1, `one running launcher pod: ${pods.map((p) => p.metadata.name).join(', ')}`);
    const pod = pods[0];
    assert.ok(pod?.spec.nodeName !== undefined);
    return { pod: pod.metadata.name, node: pod.spec.nodeName };
  };
  const otherNode = (name: string): string => {
    const other = nodes.find((n) => n.name !== name);
    assert.ok(other !== undefined);
    return other.name;
  };
  /** Applies a migration to the node the VM is not on and waits for its end. */
  const migrate = async (name: string, overrides: NonNullable<Parameters<typeof migrationManifest>[3]>): Promise<{ m: VirtualMachineMigration | undefined; before: { pod: string; node: string }; target: string }> => {
    const before = runningOn();
    const target = otherNode(before.node);
    const manifest = migrationManifest(s, name, VM, overrides);
    manifest.spec.targetNodeSelector = { 'kubernetes.io/hostname': target };
    apply(cluster, manifest);
    await eventually(`migration ${name} ended`, () => {
      const p = getMigration(cluster, s.namespace, name)?.status?.phase;
      return p === 'Succeeded' || p === 'Failed' || p === 'Cancelled' ? p : undefined;
    }, 600_000, 250);
    return { m: getMigration(cluster, s.namespace, name), before, target };
  };

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    for (const name of agentPods) cluster.kubectl(['delete', 'pod', name, '-n', s.namespace, '--ignore-not-found', '--wait=false']);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await s.cleanup();
    for (const node of nodes) await cluster.deleteNode(node.name);
    // The sysctl is the host's (every simulated node shares this kernel): put it back.
    await writeFile(SYSCTL, `${sysctlBefore}\n`);
  });

  void it('into a node not labelled post-copy capable, a post-copy-allowed migration runs pre-copy only and says why', async (t) => {
    const observer = new LauncherObserver(cluster, s.namespace, VM, token);
    // A short completion timeout: pre-copy alone does not converge against this guest.
    const { m, before, target } = await migrate('pc-pre', { ...FORCE_POST_COPY, completionTimeoutPerGiB: 60 });
    assert.notEqual(m?.status?.mode, 'PostCopy', 'no post-copy into a node that cannot receive it');
    t.diagnostic(`pre-copy only: ${m?.status?.phase ?? '?'} ${m?.status?.failureReason ?? ''} (accel=tcg)`);
    const events = eventsFor(cluster, s.namespace, 'pc-pre');
    const notice = events.find((e) => e.startsWith('PostCopyUnavailable: '));
    assert.ok(notice !== undefined, `a PostCopyUnavailable event: ${events.join(' | ')}`);
    assert.match(notice, new RegExp(`${target} cannot receive it \\(the target node has no keyvirt\\.io/postcopy=true label`));
    if (m?.status?.phase === 'Succeeded') {
      await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the target', (v) => running(v) && v.status?.launcherPod === m.status?.targetPod, 120_000);
    } else {
      assert.equal(m?.status?.phase, 'Failed', `ended ${m?.status?.phase ?? '?'}`);
      await eventually('target pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
      assert.deepEqual(runningOn(), before, 'the source runs on');
    }
    assert.deepEqual(invariantViolations(await observer.stop()), [], 'never two launchers running the guest, never none');
    assert.deepEqual(await bootIds(), [boot], 'the guest was not reset');
  });

  void it('the chart\'s node agent sets vm.unprivileged_userfaultfd and labels its node post-copy capable', async () => {
    startNodeAgents();
    for (const node of nodes) {
      const meta = await eventually(`${node.name} labelled keyvirt.io/postcopy=true`, () => {
        const m = nodeMeta(node.name);
        return m.labels['keyvirt.io/postcopy'] === 'true' ? m : undefined;
      }, 180_000);
      assert.match(meta.annotations['keyvirt.io/postcopy-reason'] ?? '', /vm\.unprivileged_userfaultfd=1/);
    }
    assert.equal((await readFile(SYSCTL, 'utf8')).trim(), '1', 'the node agent set the host\'s sysctl');
  });

  void it('kubectl apply of a migration forced into post-copy → Succeeded, mode PostCopy, the same boot', async (t) => {
    const observer = new LauncherObserver(cluster, s.namespace, VM, token);
    const { m, before, target } = await migrate('pc-move', FORCE_POST_COPY);
    assert.equal(m?.status?.phase, 'Succeeded', `failure: ${m?.status?.failureReason ?? ''}`);
    assert.equal(m.status.mode, 'PostCopy', 'the migration switched to post-copy');
    assert.equal(m.status.targetNode, target);
    t.diagnostic(`post-copy: downtime_ms=${m.status.downtimeMs ?? '?'} total_ms=${m.status.totalTimeMs ?? '?'} guest_pause_ms=${m.status.guestPauseMs ?? '?'} accel=tcg`);
    const maxAtSwitch = Math.max(...(await readDiskRecords(image)).map((r) => r.n));
    const moved = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the target', (v) => running(v) && v.status?.launcherPod === m.status?.targetPod, 120_000);
    assert.equal(moved.status?.nodeName, target);
    assert.equal(moved.status?.migrationState?.mode, 'PostCopy');
    await eventually('exactly one launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    assert.notEqual(runningOn().pod, before.pod);
    assert.deepEqual(invariantViolations(await observer.stop()), [], 'never two launchers running the guest, never none');
    const records = await eventually('records written after the switch', async () => {
      const r = await readDiskRecords(image);
      return Math.max(...r.map((x) => x.n)) > maxAtSwitch + 5 ? r : undefined;
    }, 120_000);
    assert.deepEqual([...new Set(records.map((r) => r.bootId))], [boot], 'the guest was not reset');
    const events = eventsFor(cluster, s.namespace, 'pc-move');
    assert.ok(!events.some((e) => e.startsWith('PostCopyUnavailable')), `no pre-copy fallback: ${events.join(' | ')}`);
  });
});

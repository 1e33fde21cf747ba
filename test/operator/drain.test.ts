// End to end on the local cluster: `kubectl drain` of a node running three LiveMigrate
// VMs and one Shutdown VM (real operator under its shipped RBAC, real launchers, real
// QEMU on throwaway simulated nodes). The drain completes; the three keep their boot
// ids on other nodes (live-migrated by evacuation migrations while the launcher eviction
// webhook refuses the evictions with 429, ADR 0121); the fourth shuts down and starts again elsewhere;
// uncordoning brings nothing back; a `keyvirt.io/drain` taint moves LiveMigrate VMs
// off a node without cordoning it.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { eventually } from '../support/cluster.ts';
import { readDiskRecords } from '../support/guest.ts';
import { currentBoot, drainNode, type DrainScenario, evacuationMigrations, guestUp, podsOnNode, startDrainScenario } from './drain-scenario.ts';
import { eventsFor, getVm, launcherPods, waitVm } from './vm-fixtures.ts';

const launcherLogLine = z.object({ msg: z.string(), signal: z.string().optional(), reason: z.string().optional(), message: z.string().optional() });

function jsonOrUndefined(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

const pdbList = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string() }) })) });

/** The namespace's launcher budget as operators before ADR 0121 made it. */
function legacyBudget(namespace: string): unknown {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: 'keyvirt-launchers', namespace, labels: { 'app.kubernetes.io/component': 'launcher-disruption-budget', 'app.kubernetes.io/managed-by': 'keyvirt-operator' } },
    spec: {
      minAvailable: 2 ** 31 - 1,
      selector: { matchLabels: { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'keyvirt.io/eviction-strategy': 'LiveMigrate' } },
      unhealthyPodEvictionPolicy: 'IfHealthyBudget',
    },
  };
}

void describe('kubectl drain of a node with LiveMigrate and Shutdown VMs', { timeout: 30 * 60_000 }, () => {
  let sc: DrainScenario;
  const boots = new Map<string, { bootId: string; maxN: number }>();

  before(async () => {
    sc = await startDrainScenario({ prefix: 'kv-drain', liveMigrate: 3, shutdown: 1, targets: 2 });
    for (const vm of sc.vms) boots.set(vm.name, await currentBoot(vm.image));
  });

  after(async () => {
    await sc.dispose();
  });

  void it("the eviction webhook refuses (429) to evict the LiveMigrate VMs' running launchers and lets the Shutdown VM's go; an earlier operator's budget is removed", async () => {
    const { cluster, s } = sc;
    // A namespace budget as the operators before ADR 0121 made it: this operator removes it.
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify(legacyBudget(s.namespace)));
    await eventually('the earlier operator\'s namespace budget removed', () => (pdbList.parse(JSON.parse(cluster.kubectl(['get', 'poddisruptionbudgets', '-n', s.namespace, '-o', 'json']))).items.length === 0 ? true : undefined), 60_000);
    for (const vm of sc.vms) {
      const labels = launcherPods(cluster, s.namespace, vm.name)[0]?.metadata.labels ?? {};
      assert.equal(labels['keyvirt.io/eviction-strategy'], vm.eviction, `the launcher pod of ${vm.name}`);
    }
    const evict = (podName: string, dryRun: boolean): string =>
      cluster.kubectl(
        ['create', '--raw', `/api/v1/namespaces/${s.namespace}/pods/${podName}/eviction${dryRun ? '?dryRun=All' : ''}`, '-f', '-'],
        JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: podName, namespace: s.namespace } }),
      );
    const pod = launcherPods(cluster, s.namespace, 'live-1')[0];
    assert.ok(pod);
    assert.throws(() => evict(pod.metadata.name, false), /TooManyRequests[\s\S]*launcher-eviction\.keyvirt\.io" denied the request: pod .*live-1 runs VirtualMachine live-1, whose evictionStrategy is LiveMigrate/);
    assert.equal(launcherPods(cluster, s.namespace, 'live-1')[0]?.metadata.uid, pod.metadata.uid, 'the refused eviction left the pod alone');
    const down = launcherPods(cluster, s.namespace, 'down-1')[0];
    assert.ok(down);
    assert.match(evict(down.metadata.name, true), /"status":\s*"Success"|Success/, "the Shutdown VM's launcher may be evicted (dry run)");
    assert.equal(launcherPods(cluster, s.namespace, 'down-1')[0]?.metadata.uid, down.metadata.uid, 'the dry run left it alone');
  });

  void it('kubectl drain completes: LiveMigrate VMs keep their boot on other nodes, the Shutdown VM restarts elsewhere', async () => {
    const { cluster, s, source } = sc;
    const downPod = launcherPods(cluster, s.namespace, 'down-1')[0];
    assert.ok(downPod);
    const drain = await drainNode(cluster, source, 900);
    assert.equal(drain.exitCode, 0, `kubectl drain failed after ${String(drain.ms)} ms:\n${drain.output}`);
    assert.match(drain.output, /will retry after .*denied the request: pod .* whose evictionStrategy is LiveMigrate/, 'the drain met the webhook: evictions of LiveMigrate launchers were refused until the migrations moved them');
    assert.match(drain.output, new RegExp(`node/${source} drained`));
    assert.deepEqual(podsOnNode(cluster, source), [], 'nothing left on the drained node');

    const migrations = evacuationMigrations(cluster, s.namespace, source);
    assert.deepEqual(migrations.map((m) => m.spec.vmName).sort(), ['live-1', 'live-2', 'live-3'], 'one evacuation migration per LiveMigrate VM, none for the Shutdown VM');
    for (const m of migrations) {
      assert.equal(m.status?.phase, 'Succeeded', `${m.metadata.name}: ${m.status?.failureReason ?? ''}`);
      assert.equal(m.status?.sourceNode, source);
      assert.ok(m.status?.targetNode !== undefined && sc.targets.includes(m.status.targetNode));
    }

    for (const vm of sc.vms.filter((v) => v.eviction === 'LiveMigrate')) {
      const before = boots.get(vm.name);
      assert.ok(before);
      const now = await waitVm(cluster, { namespace: s.namespace, name: vm.name }, 'running on a target node', (v) => guestUp(v) && v.status?.nodeName !== source, 120_000);
      assert.ok(sc.targets.includes(now.status?.nodeName ?? ''), `${vm.name} on ${now.status?.nodeName ?? '?'}`);
      // The guest writes on after the move, and only ever as the boot it was before it.
      const after = await eventually(
        `${vm.name} writing on after the move`,
        async () => {
          const records = await readDiskRecords(vm.image);
          const mine = records.filter((r) => r.bootId === before.bootId);
          const others = [...new Set(records.filter((r) => r.bootId !== before.bootId).map((r) => r.bootId))];
          return others.length > 0 || Math.max(0, ...mine.map((r) => r.n)) > before.maxN + 10 ? { others, mine } : undefined;
        },
        120_000,
      );
      assert.deepEqual(after.others, [], `${vm.name} kept its boot ${before.bootId}: no reset (records of another boot on its disk)`);
      assert.ok(after.mine.length > 0);
      const pods = launcherPods(cluster, s.namespace, vm.name).filter((p) => p.metadata.deletionTimestamp === undefined);
      assert.equal(pods.length, 1, `${vm.name}: exactly one launcher pod`);
      assert.equal(pods[0]?.spec.nodeName, now.status?.nodeName);
    }

    const down = sc.vms.find((v) => v.eviction === 'Shutdown');
    assert.ok(down);
    const downBefore = boots.get(down.name);
    assert.ok(downBefore);
    const restarted = await waitVm(cluster, { namespace: s.namespace, name: down.name }, 'running again on a target node', (v) => guestUp(v) && v.status?.nodeName !== source, 300_000);
    assert.ok(sc.targets.includes(restarted.status?.nodeName ?? ''));
    const fresh = await eventually(`${down.name} booted again`, async () => {
      const b = await currentBoot(down.image, [downBefore.bootId]);
      return b.bootId !== downBefore.bootId && b.maxN > 3 ? b : undefined;
    }, 120_000);
    assert.notEqual(fresh.bootId, downBefore.bootId, 'the Shutdown VM was stopped and started again');
    // The evicted launcher shut the guest down through ACPI on SIGTERM (its log stays on the node).
    const evictedLog = (await readFile(path.join(cluster.layout.nodesDir, source, 'pods', downPod.metadata.uid, 'launcher.log'), 'utf8'))
      .split('\n')
      .flatMap((line) => {
        const parsed = launcherLogLine.safeParse(jsonOrUndefined(line));
        return parsed.success ? [parsed.data] : [];
      });
    assert.ok(evictedLog.some((l) => l.msg === 'termination requested; shutting the VM down' && l.signal === 'SIGTERM'), 'the eviction reached the launcher as SIGTERM');
    const ended = evictedLog.find((l) => l.msg === 'vm ended');
    assert.equal(ended?.reason, 'GuestShutdown', `a graceful guest shutdown, not a kill: ${ended?.message ?? 'no end logged'}`);
    const downEvents = eventsFor(cluster, s.namespace, down.name);
    assert.equal(downEvents.filter((e) => e.startsWith('Evacuating:')).length, 0, 'no migration for a Shutdown VM');

    const nodeEvents = eventsFor(cluster, 'default', source);
    assert.ok(nodeEvents.some((e) => e.startsWith('PreparingForMaintenance:')), `node events: ${nodeEvents.join(' | ')}`);
    assert.ok(nodeEvents.some((e) => e.startsWith('Maintenance:')), `node events: ${nodeEvents.join(' | ')}`);
  });

  void it('uncordoning brings nothing back', async () => {
    const { cluster, s, source } = sc;
    const placed = new Map(sc.vms.map((v) => [v.name, getVm(cluster, s.namespace, v.name)?.status?.nodeName]));
    cluster.kubectl(['uncordon', source]);
    await sleep(15_000);
    for (const vm of sc.vms) {
      const now = getVm(cluster, s.namespace, vm.name);
      assert.equal(now?.status?.nodeName, placed.get(vm.name), `${vm.name} stays where it went`);
      assert.equal(now?.status?.phase, 'Running');
    }
    assert.equal(evacuationMigrations(cluster, s.namespace, source).length, 3, 'no new migration');
    assert.deepEqual(podsOnNode(cluster, source), []);
  });

  void it('a keyvirt.io/drain taint moves the LiveMigrate VMs off a node without cordoning it or evicting anything', async () => {
    const { cluster, s } = sc;
    const nodeOf = (name: string): string => getVm(cluster, s.namespace, name)?.status?.nodeName ?? '';
    const live = sc.vms.filter((v) => v.eviction === 'LiveMigrate');
    const counts = sc.targets.map((t) => ({ t, n: live.filter((v) => nodeOf(v.name) === t).length })).sort((a, b) => b.n - a.n);
    const node = counts[0]?.t ?? '';
    const leaving = live.filter((v) => nodeOf(v.name) === node);
    assert.ok(leaving.length > 0, 'a target node runs LiveMigrate VMs');
    const stayingPods = sc.vms
      .filter((v) => v.eviction === 'Shutdown' && nodeOf(v.name) === node)
      .map((v) => ({ name: v.name, uid: launcherPods(cluster, s.namespace, v.name)[0]?.metadata.uid }));
    cluster.kubectl(['taint', 'node', node, 'keyvirt.io/drain=maintenance:NoSchedule']);
    try {
      for (const vm of leaving) {
        const before = boots.get(vm.name);
        assert.ok(before);
        await waitVm(cluster, { namespace: s.namespace, name: vm.name }, `leaving the tainted ${node}`, (v) => guestUp(v) && v.status?.nodeName !== node, 300_000);
        const others = (await readDiskRecords(vm.image)).filter((r) => r.bootId !== before.bootId);
        assert.deepEqual([...new Set(others.map((r) => r.bootId))], [], `${vm.name} kept its boot`);
      }
      const migrations = evacuationMigrations(cluster, s.namespace, node);
      assert.deepEqual(migrations.map((m) => m.spec.vmName).sort(), leaving.map((v) => v.name).sort());
      assert.ok(migrations.every((m) => m.status?.phase === 'Succeeded'));
      assert.equal(cluster.kubectl(['get', 'node', node, '-o', 'jsonpath={.spec.unschedulable}']), '', 'the taint does not cordon the node');
      for (const p of stayingPods) {
        assert.equal(launcherPods(cluster, s.namespace, p.name)[0]?.metadata.uid, p.uid, `${p.name} (Shutdown) is not touched: nothing evicts it`);
      }
    } finally {
      cluster.kubectl(['taint', 'node', node, 'keyvirt.io/drain-']);
    }
  });
});

// API partition with storage intact: the VM's node loses the network (API server,
// operator, other nodes) but still reaches the shared storage, so its launcher keeps
// renewing the lease. The VM keeps running where it is and is not restarted elsewhere
// (a replacement launcher, if one is made, never gets the lease and never starts QEMU);
// its status says Ready Unknown. When the network returns, the VM is Ready again on the
// same node with the same QEMU, and no replacement is left. The double-run checker
// watches throughout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { condition, getVm, launcherPods } from '../operator/vm-fixtures.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

/** Long enough for detection (2 s), a replacement's full lease wait (L = 8 s) and its claim. */
const PARTITION_MS = 30_000;

void describe('HA: the VM\'s node is cut off from the API, its storage intact', { timeout: 30 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  let cut = '';
  const vm = 'ha-partition';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-cut', nodes: 2 });
  });

  after(async () => {
    if (cut !== '') sc.cluster.faults.restoreNetwork(cut);
    await checker?.stop();
    await sc.dispose();
  });

  void it('keeps running where it is, not restarted, its status Unknown', async (t) => {
    sc.createVm(vm, { ha: true });
    const first = await sc.waitRunning(vm, 'running');
    const node = first.status?.nodeName ?? '';
    const pod = first.status?.launcherPod ?? '';
    checker = await sc.watch(vm);
    const qemuBefore = (await checker.report()).qemus.filter((q) => q.node === node).map((q) => q.pid);
    assert.equal(qemuBefore.length, 1);

    const started = Date.now();
    sc.cluster.faults.cutNetwork(node);
    cut = node;
    const unknown = await eventually('Ready Unknown', () => {
      const v = getVm(sc.cluster, sc.s.namespace, vm);
      const ready = v === undefined ? undefined : condition(v, 'Ready');
      return ready?.status === 'Unknown' ? ready : undefined;
    }, 60_000, 250);
    t.diagnostic(`cut off → Ready Unknown (${unknown.reason}) after ${Date.now() - started} ms`);
    assert.match(unknown.reason, /NodeUnreachable|LauncherUnreachable/);
    await sleep(Math.max(0, PARTITION_MS - (Date.now() - started)));

    const v = getVm(sc.cluster, sc.s.namespace, vm);
    assert.equal(v?.status?.nodeName, node, 'the VM is still shown on its node');
    assert.equal(v?.status?.launcherPod, pod);
    assert.notEqual(v?.status?.phase, 'Running', 'Running is not claimed for an unreachable launcher');
    assert.equal(condition(v ?? first, 'Ready')?.status, 'Unknown');
    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 1, `one boot writes the disk: ${describeDoubleRuns(report)}`);
    assert.deepEqual(report.qemus.map((q) => q.pid), qemuBefore, `only the original QEMU ever ran: ${describeDoubleRuns(report)}`);
    assert.ok(report.qemus.every((q) => q.lastRunnableMs !== undefined && q.lastRunnableMs >= (report.lastSampleMs ?? 0) - 1000), 'and it still runs');
  });

  void it('with the network back, it is Ready on the same node and no replacement is left', async () => {
    const node = cut;
    sc.cluster.faults.restoreNetwork(cut);
    cut = '';
    const back = await sc.waitRunning(vm, 'Ready again', (n) => n === node, 120_000);
    assert.equal(back.status?.nodeName, node);
    await eventually('no replacement launcher left', () => (launcherPods(sc.cluster, sc.s.namespace, vm).length === 1 ? true : undefined), 60_000);
    const report = await checker?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 1, describeDoubleRuns(report));
    assert.equal(report.qemus.length, 1, describeDoubleRuns(report));
  });
});

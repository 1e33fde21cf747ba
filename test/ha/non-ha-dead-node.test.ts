// A VM without high availability (runStrategy Always) whose node loses power: it is not
// reported Ready (Ready Unknown, NodeUnreachable or LauncherUnreachable) and it is not
// restarted elsewhere — KeyVirt cannot prove its QEMU dead without a lease — until an
// administrator marks the node fenced (annotation keyvirt.io/node-fenced=true); then the
// old launcher pod is force-deleted and the VM boots on another node. The double-run
// checker watches throughout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { condition, getVm, launcherPods } from '../operator/vm-fixtures.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

void describe('a VM without HA on a node that lost power', { timeout: 30 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  let dead = '';
  const vm = 'plain';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-plain', nodes: 2 });
  });

  after(async () => {
    await checker?.stop();
    await sc.dispose();
  });

  void it('is not reported Ready, and stays where it was', async (t) => {
    sc.createVm(vm, { ha: false });
    const first = await sc.waitRunning(vm, 'running');
    dead = first.status?.nodeName ?? '';
    const pod = first.status?.launcherPod ?? '';
    checker = await sc.watch(vm);
    const started = Date.now();
    await sc.cluster.faults.crash(dead);
    const ready = await eventually('Ready no longer True', () => {
      const v = getVm(sc.cluster, sc.s.namespace, vm);
      const c = v === undefined ? undefined : condition(v, 'Ready');
      return c !== undefined && c.status !== 'True' ? c : undefined;
    }, 60_000, 250);
    t.diagnostic(`power loss → Ready ${ready.status} (${ready.reason}) after ${Date.now() - started} ms`);
    assert.equal(ready.status, 'Unknown');
    assert.match(ready.reason, /NodeUnreachable|LauncherUnreachable/);
    // Well past every HA deadline: nothing restarts it.
    await sleep(30_000);
    const v = getVm(sc.cluster, sc.s.namespace, vm);
    assert.equal(v?.status?.nodeName, dead);
    assert.equal(v?.status?.launcherPod, pod);
    assert.notEqual(condition(v ?? first, 'Ready')?.status, 'True');
    assert.deepEqual(launcherPods(sc.cluster, sc.s.namespace, vm).map((p) => p.metadata.name), [pod], 'no second launcher pod');
    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 1, describeDoubleRuns(report));
  });

  void it('marked fenced by an administrator, the node lets it boot elsewhere', async (t) => {
    const started = Date.now();
    sc.cluster.kubectl(['annotate', 'node', dead, 'keyvirt.io/node-fenced=true', '--overwrite']);
    const moved = await sc.waitRunning(vm, 'running on the other node', (n) => n !== undefined && n !== dead, 300_000);
    t.diagnostic(`fenced → running with its agent on ${moved.status?.nodeName ?? '?'} after ${Date.now() - started} ms (TCG)`);
    const report = await checker?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
  });
});

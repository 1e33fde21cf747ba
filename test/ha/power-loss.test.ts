// Power loss: the node running a highly available VM is killed with its pods (the
// simulator's process group SIGKILLed). The VM runs again on the other node, its guest
// agent connected, after the lease expired; the dead node's launcher pod is gone; when
// the node powers back on nothing of the old launcher starts again. All along, the
// double-run checker sees at most one runnable QEMU of the VM and one boot id writing
// its disk at a time. Real operator, launchers, QEMU (TCG here) and test guest.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { condition, eventsFor, getVm, launcherPods } from '../operator/vm-fixtures.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

void describe('HA: power loss of the VM\'s node', { timeout: 30 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  const vm = 'ha-power';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-power', nodes: 2 });
  });

  after(async () => {
    await checker?.stop();
    await sc.dispose();
  });

  void it('runs the VM on the other node, and never twice', async (t) => {
    sc.createVm(vm, { ha: true });
    const first = await sc.waitRunning(vm, 'running');
    const dead = first.status?.nodeName ?? '';
    const oldPod = first.status?.launcherPod ?? '';
    assert.ok(sc.nodes.includes(dead), `runs on one of the suite's nodes: ${dead}`);
    checker = await sc.watch(vm);

    const crashed = Date.now();
    await sc.cluster.faults.crash(dead);
    const unknown = await eventually('Ready no longer True', () => {
      const v = getVm(sc.cluster, sc.s.namespace, vm);
      const ready = v === undefined ? undefined : condition(v, 'Ready');
      return ready !== undefined && ready.status !== 'True' ? ready : undefined;
    }, 60_000, 250);
    const detectMs = Date.now() - crashed;
    assert.match(unknown.reason, /NodeUnreachable|LauncherUnreachable/);

    const moved = await sc.waitRunning(vm, 'running on the other node', (n) => n !== undefined && n !== dead, 300_000);
    const totalMs = Date.now() - crashed;
    t.diagnostic(`power loss → Ready ${unknown.status} (${unknown.reason}) after ${detectMs} ms → running with its agent on ${moved.status?.nodeName ?? '?'} after ${totalMs} ms (TCG)`);
    assert.notEqual(moved.status?.launcherPod, oldPod);
    await eventually('the dead node\'s launcher pod gone', () => (launcherPods(sc.cluster, sc.s.namespace, vm).some((p) => p.metadata.name === oldPod) ? undefined : true), 60_000);
    const events = eventsFor(sc.cluster, sc.s.namespace, vm).join('\n');
    assert.match(events, /HARestarted/, events);

    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, `a second boot writes the disk: ${describeDoubleRuns(report)}`);
  });

  void it('the node powering back on starts nothing of the old launcher', async () => {
    const dead = sc.nodes.find((n) => n !== getVm(sc.cluster, sc.s.namespace, vm)?.status?.nodeName) ?? '';
    await sc.cluster.faults.restart(dead);
    await sleep(15_000);
    const pods = launcherPods(sc.cluster, sc.s.namespace, vm);
    assert.deepEqual(pods.filter((p) => p.spec.nodeName === dead).map((p) => p.metadata.name), [], 'no launcher pod on the returned node');
    const report = await checker?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
    assert.ok(report.qemus.every((q) => q.node !== dead || q.lastRunnableMs === undefined || q.lastRunnableMs < (report.lastSampleMs ?? 0) - 14_000),
      `no QEMU of the VM ran on ${dead} after it came back: ${describeDoubleRuns(report)}`);
  });
});

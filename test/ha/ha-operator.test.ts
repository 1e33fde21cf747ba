// The operator's side of HA end to end (ADR 0064), on the local cluster with the real
// operator under its shipped RBAC, real launchers, real QEMU (TCG here) and the test
// guest: an HA VM and a VM without HA run on one throwaway node, and that node loses
// power. The HA VM's status turns Ready=Unknown within seconds; a replacement launcher
// on another node takes the storage lease once it has expired and boots the guest (new
// boot id, guest agent connected); the dead node's pod is force-deleted; the HA events
// are recorded and the restart is counted in the VM's budget. The VM without HA is
// shown Ready=Unknown NodeUnreachable and stays where it was — until the node gets the
// out-of-service taint, then it boots on another node. The double-run checker watches
// both VMs throughout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VirtualMachine } from '@keyvirt/crds';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { condition, eventsFor, getVm, launcherPods } from '../operator/vm-fixtures.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

const HA_VM = 'ha-op';
const PLAIN_VM = 'plain-op';

void describe('HA operator: an HA VM and a VM without HA on a node that loses power', { timeout: 40 * 60_000 }, () => {
  let sc: HaScenario;
  const checkers = new Map<string, DoubleRunChecker>();
  let dead = '';
  const first = new Map<string, VirtualMachine>();

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-op', nodes: 3 });
  });

  after(async () => {
    for (const c of checkers.values()) await c.stop();
    await sc.dispose();
  });

  const readyOf = (name: string): { status: string; reason: string; message: string } | undefined => {
    const v = getVm(sc.cluster, sc.s.namespace, name);
    return v === undefined ? undefined : condition(v, 'Ready');
  };

  void it('both VMs run on one node; the HA VM is Protected, the other has no HighAvailability condition', async () => {
    dead = sc.nodes[0] ?? '';
    const others = sc.nodes.slice(1);
    for (const n of others) sc.cluster.kubectl(['cordon', n]);
    try {
      sc.createVm(HA_VM, { ha: true });
      sc.createVm(PLAIN_VM, { ha: false });
      for (const name of [HA_VM, PLAIN_VM]) first.set(name, await sc.waitRunning(name, `running on ${dead}`, (n) => n === dead));
    } finally {
      for (const n of others) sc.cluster.kubectl(['uncordon', n]);
    }
    const ha = condition(first.get(HA_VM) ?? ({} as VirtualMachine), 'HighAvailability');
    assert.equal(ha?.status, 'True', JSON.stringify(ha));
    assert.equal(ha?.reason, 'Protected');
    assert.equal(condition(first.get(PLAIN_VM) ?? ({} as VirtualMachine), 'HighAvailability'), undefined);
    for (const name of [HA_VM, PLAIN_VM]) checkers.set(name, await sc.watch(name));
  });

  void it('power loss: the HA VM is Unknown within seconds, then runs on another node with a new boot; the old pod goes; events and budget', async (t) => {
    const oldPod = first.get(HA_VM)?.status?.launcherPod ?? '';
    const crashed = Date.now();
    await sc.cluster.faults.crash(dead);
    const unknown = await eventually('HA VM Ready no longer True', () => {
      const c = readyOf(HA_VM);
      return c !== undefined && c.status !== 'True' ? c : undefined;
    }, 60_000, 200);
    const detectMs = Date.now() - crashed;
    assert.equal(unknown.status, 'Unknown');
    assert.match(unknown.reason, /^(LauncherUnreachable|NodeUnreachable)$/);
    assert.ok(detectMs < 10_000, `Ready=Unknown after ${detectMs} ms (heartbeats every 500 ms, silence threshold 2 s)`);
    assert.equal(getVm(sc.cluster, sc.s.namespace, HA_VM)?.status?.phase, 'Unknown', 'Running is not claimed for a launcher that cannot be heard');

    const moved = await sc.waitRunning(HA_VM, 'running on another node', (n) => n !== undefined && n !== dead, 300_000);
    const totalMs = Date.now() - crashed;
    t.diagnostic(`power loss → Ready Unknown (${unknown.reason}) after ${detectMs} ms → guest agent connected on ${moved.status?.nodeName ?? '?'} after ${totalMs} ms (TCG, lease R=1 s F=5 s L=8 s)`);
    assert.notEqual(moved.status?.launcherPod, oldPod);
    await eventually('the dead node\'s launcher pod gone', () => (launcherPods(sc.cluster, sc.s.namespace, HA_VM).some((p) => p.metadata.name === oldPod) ? undefined : true), 60_000);
    assert.deepEqual(launcherPods(sc.cluster, sc.s.namespace, HA_VM).map((p) => p.metadata.name), [moved.status?.launcherPod], 'one launcher pod left');

    const events = eventsFor(sc.cluster, sc.s.namespace, HA_VM);
    for (const reason of ['HADetectedFailure', 'HAReplacementCreated', 'HALeaseAcquired', 'HARestarted']) {
      assert.ok(events.some((e) => e.startsWith(`${reason}:`)), `event ${reason} among\n${events.join('\n')}`);
    }
    const restarts = JSON.parse(moved.metadata.annotations?.['keyvirt.io/ha-restarts'] ?? '[]') as unknown[];
    assert.equal(restarts.length, 1, 'one restart counted in the budget');
    assert.match(condition(moved, 'HighAvailability')?.message ?? '', /2 of 3 restarts left/);

    const report = await checkers.get(HA_VM)?.report();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, `a new boot writes the disk: ${describeDoubleRuns(report)}`);
  });

  void it('the VM without HA is Ready=Unknown NodeUnreachable and is not restarted', async () => {
    const pod = first.get(PLAIN_VM)?.status?.launcherPod ?? '';
    // The node turns NotReady after the node monitor's grace period: then the reason is the node.
    const ready = await eventually('VM without HA: Ready Unknown NodeUnreachable', () => {
      const c = readyOf(PLAIN_VM);
      return c?.status === 'Unknown' && c.reason === 'NodeUnreachable' ? c : undefined;
    }, (sc.cluster.nodeMonitorGracePeriodSeconds + 40) * 1000, 500);
    assert.match(ready.message, new RegExp(`node ${dead}`));
    // Well past every HA deadline (L = 8 s) since the crash: nothing restarted it.
    await sleep(10_000);
    const v = getVm(sc.cluster, sc.s.namespace, PLAIN_VM);
    assert.equal(v?.status?.phase, 'Unknown');
    assert.equal(v?.status?.nodeName, dead);
    assert.equal(v?.status?.launcherPod, pod);
    assert.deepEqual(launcherPods(sc.cluster, sc.s.namespace, PLAIN_VM).map((p) => p.metadata.name), [pod], 'no second launcher pod');
    const report = await checkers.get(PLAIN_VM)?.report();
    assert.ok(report !== undefined);
    assert.equal(report.bootIds.length, 1, describeDoubleRuns(report));
  });

  void it('after the out-of-service taint the VM without HA boots on another node', async (t) => {
    const started = Date.now();
    sc.cluster.kubectl(['taint', 'node', dead, 'node.kubernetes.io/out-of-service=nodeshutdown:NoExecute', '--overwrite']);
    const moved = await sc.waitRunning(PLAIN_VM, 'running on another node', (n) => n !== undefined && n !== dead, 300_000);
    t.diagnostic(`out-of-service taint → guest agent connected on ${moved.status?.nodeName ?? '?'} after ${Date.now() - started} ms (TCG)`);
    const events = eventsFor(sc.cluster, sc.s.namespace, PLAIN_VM);
    assert.ok(events.some((e) => e.startsWith('NodeFenced:')), events.join('\n'));
    const report = await checkers.get(PLAIN_VM)?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
    const ha = await checkers.get(HA_VM)?.stop();
    assert.ok(ha !== undefined);
    assert.deepEqual(ha.violations, [], describeDoubleRuns(ha));
    assert.equal(ha.bootIds.length, 2, describeDoubleRuns(ha));
  });
});

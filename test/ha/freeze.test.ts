// Freeze: every process of the VM's node stops (freezer cgroup) — simulator, launcher,
// QEMU — without dying. The VM runs again on the other node once its lease expired (the
// frozen launcher cannot renew it); when the node thaws, its old launcher finds its lease
// gone or its fence deadline past and kills its QEMU at once, and that QEMU never writes
// to the disk the VM now uses (the takeover moved the disk to a new inode). The
// double-run checker watches both rules throughout, allowing two runnable QEMUs only for
// the kill latency right after the thaw.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { getVm, launcherPods } from '../operator/vm-fixtures.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

void describe('HA: the VM\'s node freezes, then thaws', { timeout: 30 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  let frozen = '';
  const vm = 'ha-freeze';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-freeze', nodes: 2 });
  });

  after(async () => {
    if (frozen !== '') sc.cluster.faults.thaw(frozen);
    await checker?.stop();
    await sc.dispose();
  });

  void it('restarts the VM elsewhere after the lease expired', async (t) => {
    sc.createVm(vm, { ha: true });
    const first = await sc.waitRunning(vm, 'running');
    frozen = first.status?.nodeName ?? '';
    checker = await sc.watch(vm);
    const inodeBefore = fs.statSync(sc.diskOf(vm)).ino;

    const started = Date.now();
    sc.cluster.faults.freeze(frozen);
    const moved = await sc.waitRunning(vm, 'running on the other node', (n) => n !== undefined && n !== frozen, 300_000);
    t.diagnostic(`frozen → running with its agent on ${moved.status?.nodeName ?? '?'} after ${Date.now() - started} ms (TCG)`);
    assert.notEqual(fs.statSync(sc.diskOf(vm)).ino, inodeBefore, 'the takeover fenced the disk: a new inode at the same path');
    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
    const old = report.qemus.filter((q) => q.node === frozen);
    assert.ok(old.length === 1, `the old QEMU is still there, frozen: ${describeDoubleRuns(report)}`);
  });

  void it('after the thaw the old QEMU is killed at once and never writes to the disk again', async (t) => {
    const before = await checker?.report();
    const oldPid = before?.qemus.find((q) => q.node === frozen)?.pid;
    assert.ok(oldPid !== undefined, 'the frozen QEMU was seen');
    const thawed = Date.now();
    sc.cluster.faults.thaw(frozen);
    frozen = '';
    await eventually('the old QEMU gone', () => (fs.existsSync(`/proc/${oldPid}/cmdline`) && fs.readFileSync(`/proc/${oldPid}/cmdline`, 'utf8').includes('qemu') ? undefined : true), 30_000, 50);
    t.diagnostic(`old QEMU ${oldPid} gone ${Date.now() - thawed} ms after the thaw`);
    // Let the VM's new boot write on for a while: any write of the old boot would show.
    await sleep(10_000);
    const report = await checker?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
    const overlap = Math.max(0, ...report.overlaps.map((w) => w.durationMs));
    t.diagnostic(`longest overlap of two runnable QEMUs: ${Math.round(overlap)} ms (allowed ${report.killLatencyMs} ms); ${describeDoubleRuns(report)}`);
    const now = getVm(sc.cluster, sc.s.namespace, vm);
    assert.equal(now?.status?.phase, 'Running');
    const pods = launcherPods(sc.cluster, sc.s.namespace, vm);
    assert.deepEqual(pods.filter((p) => p.spec.nodeName !== now?.status?.nodeName).map((p) => p.metadata.name), [], 'only the new launcher pod is left');
  });
});

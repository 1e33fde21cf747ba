// Storage loss on the VM's node: the node keeps its network but loses the shared storage
// (its own storage view hangs, later another node's view fails). The launcher cannot
// renew its lease, kills its QEMU before the lease can expire (self-fence), and the VM
// runs on another node once it did; the double-run checker sees no two runnable QEMUs
// and no interleaved boot ids. A hung storage leaves the old QEMU blocked in the kernel
// with SIGKILL pending (counted as dying), which the checker tells apart from running.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { sampleQemus } from '../support/double-run-sampler.ts';
import { startHaScenario, type HaScenario } from './ha-scenario.ts';

void describe('HA: the VM\'s node loses its storage', { timeout: 40 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  const faulty = new Set<string>();
  const vm = 'ha-storage';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-stor', nodes: 2, storageViews: true });
  });

  after(async () => {
    for (const n of faulty) await sc.cluster.faults.storageRestore(n).catch(() => undefined);
    await checker?.stop();
    await sc.dispose();
  });

  const guestName = (): string => `${sc.s.namespace}_${vm}`;

  void it('storage hangs: the launcher self-fences and the VM runs elsewhere', async (t) => {
    sc.createVm(vm, { ha: true });
    const first = await sc.waitRunning(vm, 'running');
    const node = first.status?.nodeName ?? '';
    checker = await sc.watch(vm);
    const started = Date.now();
    await sc.cluster.faults.storageHang(node);
    faulty.add(node);
    // Self-fence: within F (5 s) of the last renewal the node's QEMU no longer runs (SIGKILL pending, or gone).
    await eventually('the QEMU on the hung node killed', () => (sampleQemus(guestName()).some((q) => q.node === node && !q.dying) ? undefined : true), 30_000, 100);
    const fencedMs = Date.now() - started;
    const moved = await sc.waitRunning(vm, 'running on the other node', (n) => n !== undefined && n !== node, 300_000);
    t.diagnostic(`storage hang → QEMU killed after ${fencedMs} ms → running with its agent on ${moved.status?.nodeName ?? '?'} after ${Date.now() - started} ms (TCG)`);
    const report = await checker.report();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
    await sc.cluster.faults.storageRestore(node);
    faulty.delete(node);
  });

  void it('storage fails: the launcher self-fences and the VM runs elsewhere again', async (t) => {
    const now = await sc.waitRunning(vm, 'running');
    const node = now.status?.nodeName ?? '';
    const started = Date.now();
    await sc.cluster.faults.storageFail(node);
    faulty.add(node);
    await eventually('the QEMU on the failed node killed', () => (sampleQemus(guestName()).some((q) => q.node === node && !q.dying) ? undefined : true), 30_000, 100);
    const fencedMs = Date.now() - started;
    const moved = await sc.waitRunning(vm, 'running on the other node', (n) => n !== undefined && n !== node, 300_000);
    t.diagnostic(`storage failure → QEMU killed after ${fencedMs} ms → running with its agent on ${moved.status?.nodeName ?? '?'} after ${Date.now() - started} ms (TCG)`);
    const report = await checker?.stop();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 3, describeDoubleRuns(report));
  });
});

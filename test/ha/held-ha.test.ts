// HA with launchers run by the node agent (ADR 0136), end to end on the local cluster:
// two throwaway nodes each run the chart's node agent (held launchers on), the operator
// runs with --launcher-host node-agent, and an HA VM boots the test guest (real QEMU,
// TCG here) from a raw disk on a posix domain, its QEMU held by its pod's script while
// the agent holds the storage lease as the pod. The double-run checker watches the VM
// throughout:
//   - the agent is killed: its successor adopts the QEMU and resumes the pod's lease
//     (same holder and generation, renewed on), with no new boot;
//   - the agent's pod is deleted and created again 10 s later (a DaemonSet update, a
//     kubelet's back-off): the stopping agent's parting renewal (ADR 0138) keeps QEMU
//     running past the ordinary F while the HA replacement started meanwhile waits on
//     the longer L it states; the new agent adopts the QEMU, no new boot;
//   - the agent is frozen: nothing renews the lease, and the pod's script kills QEMU by
//     the deadline the agent last wrote, before the lease could expire; thawed, the VM
//     restarts under a takeover of the lease (a new boot, never two at once);
//   - the VM migrates live from its held pod to the other node (ADR 0137: the target
//     keeps its launcher in its pod), the lease handed over, the same boot running on;
//   - the VM's node loses power: the VM restarts on the other node, held again.
import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { readLease } from '../../launcher/src/lease/lease-file.ts';
import type { LeaseRecord } from '../../launcher/src/lease/record.ts';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, type DoubleRunChecker } from '../support/double-run-checker.ts';
import { agentLogLines, agentPids, podProcesses } from '../operator/held-fixtures.ts';
import type { VirtualMachine } from '@keyvirt/crds';
import { getMigration, migrationManifest } from '../operator/migration-observer.ts';
import { apply, condition, getVm, launcherPods, waitVm } from '../operator/vm-fixtures.ts';
import { guestUp, startHaScenario, type HaScenario } from './ha-scenario.ts';

const VM = 'ha-held';
const RESUMED = 'lease resumed for the adopted QEMU';
/** The operator's default agent-restart grace (ADR 0138). */
const GRACE_MS = 30_000;
/** How long no agent runs on the node: a kubelet's first crash back-off, past the ordinary F. */
const AGENT_GONE_MS = 10_000;
const Uid = z.object({ metadata: z.object({ uid: z.string(), labels: z.record(z.string(), z.string()).default({}) }) });

void describe('HA VMs whose launchers the node agent runs: agent killed, agent replaced, agent frozen, live migration, power loss', { timeout: 40 * 60_000 }, () => {
  let sc: HaScenario;
  let checker: DoubleRunChecker | undefined;
  let node = '';

  before(async () => {
    sc = await startHaScenario({ prefix: 'kv-ha-held', nodes: 2, heldLaunchers: true });
  });

  after(async () => {
    await checker?.stop();
    await sc.dispose();
  });

  const leaseFile = (): string => path.join(sc.root, 'leases', sc.s.namespace, VM, 'lease');
  const lease = async (): Promise<LeaseRecord> => {
    const obs = await readLease(leaseFile());
    assert.equal(obs.kind, 'record', `the lease file holds a record: ${obs.kind}`);
    return (obs as { record: LeaseRecord }).record;
  };
  const agentPod = (n: string): { uid: string } => Uid.parse(JSON.parse(sc.cluster.kubectl(['get', 'pod', `node-agent-${n}`, '-n', sc.s.namespace, '-o', 'json']))).metadata;
  /** The VM's one launcher pod, once an earlier one is gone. */
  const launcher = async (): Promise<{ name: string; uid: string; labels: Record<string, string> }> => {
    const name = await eventually('one launcher pod', () => {
      const pods = launcherPods(sc.cluster, sc.s.namespace, VM);
      return pods.length === 1 ? pods[0]?.metadata.name : undefined;
    }, 120_000);
    return { name, ...Uid.parse(JSON.parse(sc.cluster.kubectl(['get', 'pod', name, '-n', sc.s.namespace, '-o', 'json']))).metadata };
  };
  const qemuPids = async (podUid: string): Promise<number[]> =>
    (await podProcesses(podUid)).filter((q) => path.basename(q.argv[0] ?? '').startsWith('qemu-system')).map((q) => q.pid);
  const bootIds = async (): Promise<number> => (await checker?.report())?.bootIds.length ?? 0;
  /** The guest up again (Running, its agent answering) in a launcher pod other than `oldPod`: a new boot. */
  const runningElsewhere = (oldPod: string): Promise<VirtualMachine> =>
    waitVm(sc.cluster, sc.vmName(VM), 'Running again in another launcher pod', (v) => guestUp(v) && v.status?.launcherPod !== oldPod, 600_000);

  void it("runs held on one node: the pod holds QEMU, the agent holds the lease as the pod", async (t) => {
    node = sc.nodes[0] ?? '';
    const other = sc.nodes[1] ?? '';
    sc.cluster.kubectl(['cordon', other]);
    try {
      sc.createVm(VM, { ha: true });
      const vm = await sc.waitRunning(VM, `running on ${node}`, (n) => n === node);
      t.diagnostic(`running with its guest agent on ${node} (accel=${vm.status?.accelerator ?? '?'})`);
      assert.equal(vm.status?.accelerator, 'tcg');
    } finally {
      sc.cluster.kubectl(['uncordon', other]);
    }
    const pod = await launcher();
    assert.equal(pod.labels['keyvirt.io/launcher-host'], 'node-agent', 'the HA VM is held by the node agent');
    assert.equal((await qemuPids(pod.uid)).length, 1, 'its QEMU runs in the pod');
    const record = await lease();
    assert.equal(record.holder, pod.uid, 'the lease names the pod');
    assert.equal(record.node, node);
    assert.equal(record.state, 'held');
    checker = await sc.watch(VM);
  });

  void it("the agent killed: its successor resumes the lease and adopts the QEMU — or, back after the pod's deadline, finds it fenced; never two at once", async (t) => {
    const pod = await launcher();
    const [qemu] = await qemuPids(pod.uid);
    const before = await lease();
    const boots = await bootIds();
    const agent = agentPod(node).uid;
    const killed = await agentPids(agent);
    assert.ok(killed.length > 0);
    // Killed right after a renewal landed. Its successor resumes the lease only before the
    // pod's deadline (F − 1 s after that renewal's start); later, the pod has killed QEMU
    // and the VM restarts (ADR 0136). Which one happens depends on how fast the node
    // restarts the agent and how long the renewal took; both are checked.
    await eventually('a renewal landing', async () => ((await lease()).counter !== before.counter ? true : undefined), 10_000, 20);
    for (const pid of killed) process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    const logDir = path.join(sc.cluster.layout.nodesDir, node, 'pods', agent);
    // Adopted: the successor resumed the lease and renewed it since (the pod's deadline
    // moved on), the same QEMU running. Fenced: the pod's script killed QEMU first.
    let resumedCounter: number | undefined;
    const outcome = await eventually('the successor renewing the resumed lease, or QEMU fenced by its pod', async () => {
      if ((await qemuPids(pod.uid)).length === 0) return 'fenced';
      if (resumedCounter === undefined) {
        const lines = (await agentLogLines(logDir)).filter((l) => l.pod === pod.name);
        if (lines.some((l) => l.msg === RESUMED)) resumedCounter = (await lease()).counter;
        return undefined;
      }
      return (await lease()).counter > resumedCounter && (await qemuPids(pod.uid)).length === 1 ? 'adopted' : undefined;
    }, 120_000, 100);
    if (outcome === 'adopted') {
      const vm = await sc.waitRunning(VM, 'Running again with its guest agent', (n) => n === node);
      t.diagnostic(`adopted: Running again ${Date.now() - killedAt} ms after the agent was killed (TCG)`);
      assert.equal(vm.status?.launcherPod, pod.name);
      assert.deepEqual(await qemuPids(pod.uid), [qemu], 'the same QEMU runs on');
      const after = await lease();
      assert.equal(after.holder, before.holder);
      assert.equal(after.generation, before.generation, 'the same lease: no takeover');
      assert.equal(await bootIds(), boots, 'no new boot');
    } else {
      assert.deepEqual(await qemuPids(pod.uid), [], "the pod's script killed QEMU by its deadline");
      const vm = await runningElsewhere(pod.name);
      t.diagnostic(`fenced (the agent back after the pod's deadline): a new boot on ${vm.status?.nodeName ?? '?'} ${Date.now() - killedAt} ms after the kill (TCG)`);
      assert.ok((await lease()).generation > before.generation, 'the lease was taken over');
      node = vm.status?.nodeName ?? '';
    }
    const report = await checker?.report();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
  });

  void it("the agent's pod replaced 10 s later: its parting renewal keeps the lease, the new agent adopts the running guest", async (t) => {
    const pod = await launcher();
    const [qemu] = await qemuPids(pod.uid);
    assert.ok(qemu !== undefined);
    const before = await lease();
    const boots = await bootIds();
    const deleting = performance.now();
    sc.cluster.kubectl(['delete', 'pod', `node-agent-${node}`, '-n', sc.s.namespace, '--wait=true', '--timeout=60s']);
    const deletedMs = performance.now() - deleting;
    const parted = await lease();
    assert.equal(parted.fenceTimeoutMs, GRACE_MS, "the stopping agent's parting renewal states the grace as F");
    assert.ok(parted.acquireTimeoutMs > GRACE_MS, 'and a longer L with it');
    assert.equal(parted.generation, before.generation);
    // Past the ordinary F: without the parting renewal the pod would have killed QEMU.
    await sleep(AGENT_GONE_MS);
    // The operator no longer hears the launcher: its HA replacement must wait out the parting L.
    const replacement = await eventually('an HA replacement started while no agent answers', () =>
      launcherPods(sc.cluster, sc.s.namespace, VM).find((p) => p.metadata.name !== pod.name)?.metadata.name, 15_000, 250);
    assert.deepEqual(await qemuPids(pod.uid), [qemu], 'QEMU runs on in its pod while no agent runs');
    const unrenewed = await lease();
    assert.deepEqual([unrenewed.holder, unrenewed.generation, unrenewed.counter], [parted.holder, parted.generation, parted.counter], 'nobody wrote the lease meanwhile');
    sc.startNodeAgent(node);
    const back = performance.now();
    const logDir = path.join(sc.cluster.layout.nodesDir, node, 'pods', agentPod(node).uid);
    await eventually('the new agent resuming the lease', async () => ((await agentLogLines(logDir)).some((l) => l.pod === pod.name && l.msg === RESUMED) ? true : undefined), 120_000, 200);
    await eventually('the lease renewed under the ordinary timing again', async () => {
      const r = await lease();
      return r.counter > parted.counter && r.fenceTimeoutMs === before.fenceTimeoutMs ? true : undefined;
    }, 30_000, 100);
    const vm = await sc.waitRunning(VM, 'Running again with its guest agent', (n) => n === node);
    t.diagnostic(`agent pod deleted in ${Math.round(deletedMs)} ms, none for ${Math.round(back - deleting - deletedMs)} ms (HA replacement ${replacement} waiting); adopted: Running again ${Math.round(performance.now() - back)} ms after the new agent pod (TCG)`);
    assert.equal(vm.status?.launcherPod, pod.name);
    assert.deepEqual(await qemuPids(pod.uid), [qemu], 'the same QEMU runs on');
    const after = await lease();
    assert.deepEqual([after.holder, after.generation], [before.holder, before.generation], 'the same lease: no takeover');
    assert.equal((await launcher()).uid, pod.uid, `the HA replacement ${replacement} is gone`);
    assert.equal(await bootIds(), boots, 'no new boot');
    const report = await checker?.report();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
  });

  void it("the agent frozen: the pod's script kills QEMU before the lease can expire; thawed, the VM restarts once", async (t) => {
    const pod = await launcher();
    assert.equal((await qemuPids(pod.uid)).length, 1);
    const record = await lease();
    const agent = agentPod(node).uid;
    const frozen = await agentPids(agent);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    const frozenAt = performance.now();
    try {
      await eventually("the pod's QEMU killed by its deadline", async () => ((await qemuPids(pod.uid)).length === 0 ? true : undefined), record.acquireTimeoutMs * 2, 100);
      const goneMs = performance.now() - frozenAt;
      t.diagnostic(`agent frozen → QEMU gone after ${Math.round(goneMs)} ms (lease F=${record.fenceTimeoutMs} ms, L=${record.acquireTimeoutMs} ms)`);
      assert.ok(goneMs < record.acquireTimeoutMs, `QEMU gone ${Math.round(goneMs)} ms after the last possible renewal: before the lease expires (L)`);
      const unrenewed = await lease();
      assert.equal(unrenewed.holder, record.holder);
      assert.equal(unrenewed.generation, record.generation);
    } finally {
      for (const pid of frozen) process.kill(pid, 'SIGCONT');
    }
    const thawed = Date.now();
    const vm = await runningElsewhere(pod.name);
    t.diagnostic(`thawed → a new boot on ${vm.status?.nodeName ?? '?'} after ${Date.now() - thawed} ms (TCG)`);
    const now = await lease();
    const restarted = await launcher();
    assert.notEqual(restarted.uid, pod.uid, 'a new launcher pod');
    assert.equal(now.holder, restarted.uid);
    assert.ok(now.generation > record.generation, 'the lease was taken over');
    const report = await checker?.report();
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    node = vm.status?.nodeName ?? '';
  });

  void it('migrates live from its held pod to the other node (the target with its launcher in the pod): same boot, the lease handed over', async (t) => {
    const pod = await launcher();
    assert.equal(pod.labels['keyvirt.io/launcher-host'], 'node-agent', 'the source is held');
    const before = await lease();
    assert.equal(before.holder, pod.uid);
    // Both QEMUs live during a migration (the target's waits for the stream): the checker,
    // which counts processes, stops here and watches again once the source is gone.
    const pre = await checker?.stop();
    checker = undefined;
    assert.ok(pre !== undefined);
    assert.deepEqual(pre.violations, [], describeDoubleRuns(pre));
    const vmBefore = getVm(sc.cluster, sc.s.namespace, VM);
    assert.equal(condition(vmBefore ?? ({} as VirtualMachine), 'LiveMigratable')?.status, 'True', JSON.stringify(condition(vmBefore ?? ({} as VirtualMachine), 'LiveMigratable')));
    const started = Date.now();
    apply(sc.cluster, migrationManifest(sc.s, 'held-move', VM));
    const m = await eventually('the migration ended', () => {
      const got = getMigration(sc.cluster, sc.s.namespace, 'held-move');
      return ['Succeeded', 'Failed', 'Cancelled'].includes(got?.status?.phase ?? '') ? got : undefined;
    }, 300_000, 500);
    assert.equal(m.status?.phase, 'Succeeded', `failure: ${m.status?.failureReason ?? ''}`);
    const vm = await sc.waitRunning(VM, 'Running on the other node', (n) => n !== undefined && n !== node, 120_000);
    t.diagnostic(`held source → target on ${vm.status?.nodeName ?? '?'}: Succeeded after ${Date.now() - started} ms (TCG)`);
    const moved = await launcher();
    assert.notEqual(moved.uid, pod.uid);
    assert.equal(vm.status?.launcherPod, moved.name);
    const after = await lease();
    assert.equal(after.holder, moved.uid, 'the lease was handed to the target');
    assert.ok(after.generation > before.generation);
    await eventually("nothing left running in the source's pod", async () => ((await podProcesses(pod.uid)).length === 0 ? true : undefined), 60_000);
    checker = await sc.watch(VM);
    const report = await checker.report();
    assert.equal(report.bootIds.length, 1, `one guest writes on: ${describeDoubleRuns(report)}`);
    node = vm.status?.nodeName ?? '';
  });

  void it("the VM's node loses power: the VM restarts held on the other node", async (t) => {
    const pod = await launcher();
    const other = sc.nodes.find((n) => n !== node) ?? '';
    const crashed = Date.now();
    await sc.cluster.faults.crash(node);
    const vm = await sc.waitRunning(VM, `running on ${other}`, (n) => n === other, 300_000);
    t.diagnostic(`power loss → guest agent connected on ${other} after ${Date.now() - crashed} ms (TCG)`);
    const moved = await launcher();
    assert.notEqual(moved.uid, pod.uid);
    assert.equal(moved.labels['keyvirt.io/launcher-host'], 'node-agent', 'the replacement is held');
    assert.equal((await lease()).holder, moved.uid);
    assert.equal(vm.status?.launcherPod, moved.name);
    const report = await checker?.stop();
    checker = undefined;
    assert.ok(report !== undefined);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.ok(report.bootIds.length >= 1, describeDoubleRuns(report));
  });
});

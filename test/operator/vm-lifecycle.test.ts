// End to end on the local cluster: the real operator (under its shipped RBAC), the real
// launcher in a launcher pod on a simulated node, real QEMU booting the test guest.
// apply → Running (guest OS, IP) → stop → Stopped, pod gone → start → same disk →
// restart → new boot → delete → everything cleaned up.
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, probe, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, condition, eventsFor, getVm, launcherPods, pvcDisk, scratch, type Scratch, testVm, waitVm } from './vm-fixtures.ts';

const VM = 'guest-1';
const MARKER = 'keyvirt-disk-survives-stop-start';
const MARKER_OFFSET = 48 * 1024 * 1024;

function running(vm: { status?: { phase?: string; guestOSInfo?: unknown; interfaces?: { ipAddress?: string }[] } | undefined }): boolean {
  return vm.status?.phase === 'Running' && vm.status.guestOSInfo !== undefined && vm.status.interfaces?.[0]?.ipAddress !== undefined;
}

void describe('VirtualMachine lifecycle on the local cluster', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let image: string;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-life');
    image = await pvcDisk(cluster, s, 'guest-1-data');
    operator = await startSuiteOperator(cluster, s, 'life');
  });

  after(async () => {
    await stopOperator(operator);
    await s.cleanup();
  });

  void it('serves /healthz, /readyz and /metrics', async () => {
    const port = await operator.healthPort;
    assert.equal((await probe(port, '/healthz')).status, 200);
    await eventually('operator ready', async () => ((await probe(port, '/readyz')).status === 200 ? true : undefined), 60_000);
    const metrics = await probe(port, '/metrics');
    assert.match(metrics.body, /keyvirt_workqueue_depth/);
    assert.match(metrics.body, /keyvirt_informer_events_total\{kind="VirtualMachine",event="list"\}/);
  });

  void it('apply → Running with node, launcher pod, accelerator, guest OS info and IP', async () => {
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'guest-1-data' }));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with guest OS info and IP', running);
    const pods = launcherPods(cluster, s.namespace, VM);
    assert.equal(pods.length, 1, 'exactly one launcher pod');
    const pod = pods[0];
    assert.ok(pod);
    assert.equal(vm.status?.launcherPod, pod.metadata.name);
    assert.equal(vm.status?.nodeName, pod.spec.nodeName);
    assert.equal(vm.status?.interfaces?.[0]?.ipAddress, pod.status?.podIP);
    assert.equal(vm.status?.accelerator, 'tcg', 'the simulated nodes have no hardware KVM: QEMU runs under TCG');
    assert.equal(vm.status?.guestOSInfo?.id, 'debian');
    assert.equal(condition(vm, 'Ready')?.status, 'True');
    assert.equal(condition(vm, 'AgentConnected')?.status, 'True');
    assert.equal(condition(vm, 'LiveMigratable')?.status, 'True');
    assert.equal(vm.status?.observedGeneration, vm.metadata.generation);
    assert.ok(vm.metadata.finalizers?.includes('keyvirt.io/graceful-stop'));
    const events = eventsFor(cluster, s.namespace, VM);
    assert.ok(events.some((e) => e.startsWith('Running:')), `events: ${events.join(' | ')}`);
    assert.equal(events.filter((e) => e.startsWith('Running:')).length, 1, 'one event per transition');
    const metrics = await probe(await operator.healthPort, '/metrics');
    assert.match(metrics.body, /keyvirt_vm_phase_count\{phase="Running"\} 1/);
    assert.match(metrics.body, /keyvirt_vm_launcher_memory_overhead_bytes\{namespace="[^"]+",name="guest-1"\} \d+/);
    await eventually('the guest writing to its disk', async () => ((await readDiskRecords(image)).length > 3 ? true : undefined), 60_000);
  });

  let firstBoot: string;
  let firstBootRecords: { bootId: string; n: number }[] = [];

  void it('stop → Stopped, the launcher pod gone, runStrategy Halted', async () => {
    const records = await readDiskRecords(image);
    firstBoot = records[0]?.bootId ?? '';
    assert.notEqual(firstBoot, '');
    cluster.kubectl(['annotate', 'vm', VM, '-n', s.namespace, 'keyvirt.io/request=stop']);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Stopped', (v) => v.status?.phase === 'Stopped', 120_000);
    assert.equal(vm.spec.runStrategy, 'Halted');
    assert.equal(vm.metadata.annotations?.['keyvirt.io/request'], undefined, 'the request was consumed');
    await eventually('launcher pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 60_000);
    assert.equal(getVm(cluster, s.namespace, VM)?.status?.launcherPod, undefined);
    firstBootRecords = (await readDiskRecords(image)).filter((r) => r.bootId === firstBoot);
    assert.ok(firstBootRecords.length > 3);
  });

  void it('start again → Running on the same disk', async () => {
    const handle = await open(image, 'r+');
    try {
      await handle.write(Buffer.from(MARKER), 0, MARKER.length, MARKER_OFFSET);
    } finally {
      await handle.close();
    }
    cluster.kubectl(['annotate', 'vm', VM, '-n', s.namespace, 'keyvirt.io/request=start']);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running again', running);
    assert.equal(vm.spec.runStrategy, 'Always');
    // The guest numbers records from 1 at every boot into a ring at the start of the
    // disk: the new boot overwrites the old boot's first records and nothing else.
    const now = await eventually(
      'records of the new boot on the disk',
      async () => {
        const records = await readDiskRecords(image);
        return records.some((r) => r.bootId !== firstBoot) ? records : undefined;
      },
      60_000,
    );
    const newest = Math.max(...now.filter((r) => r.bootId !== firstBoot).map((r) => r.n));
    const survivors = firstBootRecords.filter((r) => r.n > newest + 10).map((r) => r.n);
    const kept = new Set(now.filter((r) => r.bootId === firstBoot).map((r) => r.n));
    assert.deepEqual(
      survivors.filter((n) => !kept.has(n)),
      [],
      `records ${String(newest + 11)}..${String(Math.max(0, ...survivors))} of the first boot are still on the disk`,
    );
    const handle2 = await open(image, 'r');
    try {
      const buf = Buffer.alloc(MARKER.length);
      await handle2.read(buf, 0, MARKER.length, MARKER_OFFSET);
      assert.equal(buf.toString(), MARKER);
    } finally {
      await handle2.close();
    }
  });

  void it('restart → a new launcher pod and a new boot, Running', async () => {
    const before = launcherPods(cluster, s.namespace, VM)[0];
    assert.ok(before);
    cluster.kubectl(['annotate', 'vm', VM, '-n', s.namespace, 'keyvirt.io/request=restart']);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running in a new launcher pod', (v) => {
      if (!running(v)) return false;
      const pods = launcherPods(cluster, s.namespace, VM);
      return pods.length === 1 && pods[0]?.metadata.uid !== before.metadata.uid;
    });
    const vm = getVm(cluster, s.namespace, VM);
    assert.equal(vm?.metadata.annotations?.['keyvirt.io/restart-of'], undefined);
    assert.ok((vm?.status?.restartCount ?? 0) >= 1 || vm?.status?.phase === 'Running');
  });

  void it('delete → the guest stopped, then the VM, its pod and its Secret gone', async () => {
    cluster.kubectl(['delete', 'vm', VM, '-n', s.namespace, '--wait=false']);
    const stopping = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Stopping while the guest shuts down', (v) => v.status?.phase === 'Stopping', 60_000).catch(() => undefined);
    await eventually('VM gone', () => (getVm(cluster, s.namespace, VM) === undefined ? true : undefined), 120_000);
    assert.equal(launcherPods(cluster, s.namespace, VM).length, 0, 'the finalizer let the VM go only after its pod');
    await eventually(
      'launcher Secret collected',
      () => (cluster.kubectl(['get', 'secret', `launcher-${VM}`, '-n', s.namespace, '--ignore-not-found', '-o', 'name']).trim() === '' ? true : undefined),
      60_000,
    );
    assert.ok(stopping === undefined || stopping.metadata.deletionTimestamp !== undefined);
  });
});

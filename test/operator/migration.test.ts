// End to end on the local cluster: live migration through `kubectl apply` of a
// VirtualMachineMigration — the real operator under its shipped RBAC, real launchers in
// launcher pods on simulated nodes, real QEMU (TCG here) running the test guest, whose
// disk is on a ReadWriteMany hostPath volume every node opens (docs/adr/0073).
// Cases: success (boot id and counter continue, records after the switch on the disk,
// the VM on the new node, one launcher pod left); cancel by deleting the object; target
// pod killed; operator killed while the memory copy runs, and while the target is
// prepared; two migrations of one VM (the second waits); a non-migratable VM. At every
// sample of every case: never two launchers running the guest, never none, and the VM
// never seen stopping or starting anew.
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { getMigration, invariantViolations, LauncherObserver, migrationManifest, vmToken } from './migration-observer.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, eventsFor, launcherPods, pvcDisk, scratch, type Scratch, TEST_RUN_LABEL, testVm, waitVm } from './vm-fixtures.ts';

const VM = 'mig-1';
const SLOW = { bandwidthPerMigration: '2Mi' } as const;

function running(vm: { status?: { phase?: string; guestOSInfo?: unknown } | undefined }): boolean {
  return vm.status?.phase === 'Running' && vm.status.guestOSInfo !== undefined;
}

void describe('VirtualMachineMigration on the local cluster', { timeout: 30 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let image: string;
  let token: string;

  const startOperator = async (): Promise<OperatorProcess> => startSuiteOperator(cluster, s, 'migration');

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-mig');
    image = await pvcDisk(cluster, s, 'mig-1-data');
    operator = await startOperator();
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'mig-1-data' }));
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running', running);
    token = vmToken(cluster, s.namespace, VM);
    await eventually('the guest writing to its disk', async () => ((await readDiskRecords(image)).length > 3 ? true : undefined), 60_000);
  });

  const observers: LauncherObserver[] = [];
  const observe = (): LauncherObserver => {
    const o = new LauncherObserver(cluster, s.namespace, VM, token);
    observers.push(o);
    return o;
  };

  after(async () => {
    for (const o of observers) await o.stop();
    await stopOperator(operator);
    await copyFile(path.join(s.dir, 'operator.log'), path.join(tmpdir(), `migration-e2e-operator-${s.runId}.log`)).catch(() => undefined);
    await s.cleanup();
  });

  const bootIds = async (): Promise<string[]> => [...new Set((await readDiskRecords(image)).map((r) => r.bootId))];
  const phase = (name: string): string | undefined => getMigration(cluster, s.namespace, name)?.status?.phase;
  const waitPhase = async (name: string, want: readonly string[], timeoutMs = 300_000): Promise<string> =>
    eventually(`migration ${name} ${want.join('|')}`, () => {
      const p = phase(name);
      return p !== undefined && want.includes(p) ? p : undefined;
    }, timeoutMs, 250);
  const runningOn = (): { pod: string; node: string; uid: string } => {
    const pods = launcherPods(cluster, s.namespace, VM).filter((p) => p.status?.phase === 'Running' && p.metadata.deletionTimestamp === undefined);
    assert.equal(pods.length, 1, `one running launcher pod: ${pods.map((p) => p.metadata.name).join(', ')}`);
    const pod = pods[0];
    assert.ok(pod?.spec.nodeName !== undefined);
    return { pod: pod.metadata.name, node: pod.spec.nodeName, uid: pod.metadata.uid };
  };

  void it('kubectl apply → Succeeded: same boot, records after the switch, the VM on the new node, one launcher pod', async () => {
    const before = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'move-1', VM));
    await waitPhase('move-1', ['Succeeded', 'Failed', 'Cancelled']);
    const m = getMigration(cluster, s.namespace, 'move-1');
    assert.equal(m?.status?.phase, 'Succeeded', `failure: ${m?.status?.failureReason ?? ''}`);
    const maxAtSwitch = Math.max(...(await readDiskRecords(image)).map((r) => r.n));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the target', (v) => running(v) && v.status?.launcherPod === m?.status?.targetPod, 120_000);
    await eventually('exactly one launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    const samples = await observer.stop();
    assert.deepEqual(invariantViolations(samples), []);
    assertMoved(m, vm, before, runningOn());
    const records = await eventually('records written after the switch', async () => {
      const r = await readDiskRecords(image);
      return Math.max(...r.map((x) => x.n)) > maxAtSwitch + 5 ? r : undefined;
    }, 60_000);
    assert.deepEqual([...new Set(records.map((r) => r.bootId))], [boot], 'the guest was not reset');
    const events = eventsFor(cluster, s.namespace, 'move-1').map((e) => e.split(':')[0]);
    for (const p of ['Scheduling', 'PreparingTarget', 'TargetReady', 'Running', 'Succeeded']) assert.ok(events.includes(p), `event ${p} in ${events.join(', ')}`);
    await eventually('the finalizer released once the migration ended', () => ((getMigration(cluster, s.namespace, 'move-1')?.metadata.finalizers ?? []).length === 0 ? true : undefined), 30_000);
  });

  void it('deleting the object mid-migration cancels it: Cancelled, the source runs on, the target pod goes', async () => {
    const before = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'cancel-1', VM, SLOW));
    await waitPhase('cancel-1', ['Running']);
    await eventually('progress reported', () => ((getMigration(cluster, s.namespace, 'cancel-1')?.status?.progress?.transferredBytes ?? 0) > 0 ? true : undefined), 30_000);
    const progressTimes = new Set<string>();
    for (let i = 0; i < 3; i++) {
      progressTimes.add(getMigration(cluster, s.namespace, 'cancel-1')?.status?.progress?.updateTime ?? '');
      await new Promise((r) => setTimeout(r, 2500));
    }
    assert.equal(progressTimes.size, 3, `status.progress refreshed at least every 2.5 s: ${[...progressTimes].join(', ')}`);
    cluster.kubectl(['delete', 'virtualmachinemigration', 'cancel-1', '-n', s.namespace, '--wait=false']);
    await eventually('migration gone', () => (getMigration(cluster, s.namespace, 'cancel-1') === undefined ? true : undefined), 60_000);
    await eventually('target pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    const samples = await observer.stop();
    assert.deepEqual(invariantViolations(samples), []);
    assert.deepEqual(runningOn(), before, 'the same source pod runs the VM');
    const events = eventsFor(cluster, s.namespace, 'cancel-1').map((e) => e.split(':')[0]);
    assert.ok(events.includes('Cancelled'), `events: ${events.join(', ')}`);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running at the source', (v) => running(v) && v.status?.launcherPod === before.pod, 60_000);
    assert.deepEqual(await bootIds(), [boot]);
  });

  void it('the target pod killed mid-migration → Failed with a reason, the source runs on', async () => {
    const before = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'kill-target', VM, SLOW));
    await waitPhase('kill-target', ['Running']);
    const target = getMigration(cluster, s.namespace, 'kill-target')?.status?.targetPod;
    assert.ok(target !== undefined);
    cluster.kubectl(['delete', 'pod', target, '-n', s.namespace, '--grace-period=0', '--force']);
    await waitPhase('kill-target', ['Failed']);
    const m = getMigration(cluster, s.namespace, 'kill-target');
    assert.ok((m?.status?.failureReason ?? '') !== '', 'a reason in status');
    await eventually('target pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    const samples = await observer.stop();
    assert.deepEqual(invariantViolations(samples), []);
    assert.deepEqual(runningOn(), before);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running at the source', (v) => running(v) && v.status?.migrationState?.result === 'Failed', 60_000);
    assert.deepEqual(await bootIds(), [boot]);
  });

  void it('the operator killed while the memory copy runs, then restarted → the migration completes', async () => {
    const before = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'restart-1', VM, { bandwidthPerMigration: '24Mi' }));
    await waitPhase('restart-1', ['Running']);
    operator.kill('SIGKILL');
    await operator.exited;
    await new Promise((r) => setTimeout(r, 3000));
    operator = await startOperator();
    const final = await waitPhase('restart-1', ['Succeeded', 'Failed', 'Cancelled']);
    await eventually('one launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    const samples = await observer.stop();
    assert.deepEqual(invariantViolations(samples), []);
    const m = getMigration(cluster, s.namespace, 'restart-1');
    assert.equal(final, 'Succeeded', `failure: ${m?.status?.failureReason ?? ''}`);
    const after = runningOn();
    assert.notEqual(after.node, before.node);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the target', (v) => running(v) && v.status?.launcherPod === after.pod, 120_000);
    assert.deepEqual(await bootIds(), [boot]);
  });

  void it('the operator killed while the target is prepared, then restarted → completes, or rolls back with the reason', async () => {
    const before = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'restart-2', VM));
    await waitPhase('restart-2', ['PreparingTarget', 'TargetReady', 'Running', 'Succeeded', 'Failed']);
    operator.kill('SIGKILL');
    await operator.exited;
    const killedIn = phase('restart-2');
    await new Promise((r) => setTimeout(r, 2000));
    operator = await startOperator();
    const final = await waitPhase('restart-2', ['Succeeded', 'Failed', 'Cancelled']);
    await eventually('one launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    const samples = await observer.stop();
    assert.deepEqual(invariantViolations(samples), []);
    const m = getMigration(cluster, s.namespace, 'restart-2');
    const after = runningOn();
    if (final === 'Succeeded') {
      assert.notEqual(after.node, before.node);
    } else {
      // The target was prepared with TLS credentials only the killed operator held.
      assert.equal(final, 'Failed', `killed in ${killedIn ?? '?'}`);
      assert.match(m?.status?.failureReason ?? '', /^CredentialsLost: /);
      assert.deepEqual(after, before, 'rolled back: the source runs on');
    }
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running', (v) => running(v) && v.status?.launcherPod === after.pod, 120_000);
    assert.deepEqual(await bootIds(), [boot]);
  });

  void it('two migrations of one VM: the second waits in Pending with the reason, then moves the VM on', async () => {
    const start = runningOn();
    const [boot] = await bootIds();
    const observer = observe();
    apply(cluster, migrationManifest(s, 'first', VM));
    await waitPhase('first', ['Scheduling', 'PreparingTarget', 'TargetReady', 'Running']);
    apply(cluster, migrationManifest(s, 'second', VM));
    const waiting = await eventually('second waiting', () => {
      const m = getMigration(cluster, s.namespace, 'second');
      return m?.status?.phase === 'Pending' && m.status.conditions?.some((c) => c.reason === 'AnotherMigrationInProgress') === true ? m : undefined;
    }, 30_000, 250);
    assert.match(waiting.status?.conditions?.[0]?.message ?? '', /migration first of this VM has not finished/);
    for (const name of ['first', 'second']) {
      const final = await waitPhase(name, ['Succeeded', 'Failed', 'Cancelled']);
      assert.equal(final, 'Succeeded', `${name}: ${getMigration(cluster, s.namespace, name)?.status?.failureReason ?? ''}`);
    }
    await eventually('one launcher pod left', () => (launcherPods(cluster, s.namespace, VM).length === 1 ? true : undefined), 60_000);
    assert.deepEqual(invariantViolations(await observer.stop()), []);
    const end = runningOn();
    const [first, second] = [getMigration(cluster, s.namespace, 'first'), getMigration(cluster, s.namespace, 'second')];
    assert.equal(first?.status?.sourceNode, start.node);
    assert.equal(second?.status?.sourceNode, first?.status?.targetNode, 'the second started where the first ended');
    assert.equal(end.pod, second?.status?.targetPod);
    assert.deepEqual(await bootIds(), [boot]);
  });

  void it('a VM that cannot live-migrate: its migration fails at once with the reason', async () => {
    const pv = `${s.namespace}-rwo-data`;
    await mkdir(path.join(s.dir, 'rwo-data'), { recursive: true });
    const manifests = [
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: pv, labels: { [TEST_RUN_LABEL]: s.runId } },
        spec: {
          capacity: { storage: '64Mi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: '',
          hostPath: { path: path.join(s.dir, 'rwo-data'), type: 'Directory' },
          claimRef: { namespace: s.namespace, name: 'rwo-data' },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'rwo-data', namespace: s.namespace },
        spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', volumeName: pv, resources: { requests: { storage: '64Mi' } } },
      },
    ];
    apply(cluster, { apiVersion: 'v1', kind: 'List', items: manifests });
    apply(cluster, testVm(s, guest, { name: 'pinned', claimName: 'rwo-data', runStrategy: 'Halted' }));
    await waitVm(cluster, { namespace: s.namespace, name: 'pinned' }, 'LiveMigratable False', (v) => v.status?.conditions?.some((c) => c.type === 'LiveMigratable' && c.status === 'False') === true, 60_000);
    const started = Date.now();
    apply(cluster, migrationManifest(s, 'pinned-move', 'pinned'));
    await waitPhase('pinned-move', ['Failed'], 30_000);
    const m = getMigration(cluster, s.namespace, 'pinned-move');
    assert.match(m?.status?.failureReason ?? '', /^NotLiveMigratable: .+/);
    assert.ok(Date.now() - started < 15_000, 'failed at once');
    assert.equal(launcherPods(cluster, s.namespace, 'pinned').length, 0, 'no target pod');
  });
});

/** The migration succeeded and the VM's status and pods say where it runs now. */
function assertMoved(m: VirtualMachineMigration | undefined, vm: VirtualMachine, before: { node: string }, after: { pod: string; node: string }): void {
  assert.notEqual(after.node, before.node, 'the VM moved to another node');
  assert.equal(after.pod, m?.status?.targetPod);
  assert.equal(vm.status?.nodeName, after.node);
  assert.equal(m?.status?.sourceNode, before.node);
  assert.equal(m?.status?.targetNode, after.node);
  assert.equal(vm.status?.migrationState?.result, 'Succeeded');
  assert.equal(vm.status?.migrationState?.migrationName, m?.metadata.name);
  assertFigures(m);
}

/** The end figures of a successful migration. */
function assertFigures(m: VirtualMachineMigration | undefined): void {
  const st = m?.status;
  assert.ok(st !== undefined);
  assert.ok((st.downtimeMs ?? -1) >= 0 && (st.totalTimeMs ?? 0) > 0, 'downtime and total time reported');
  assert.equal(st.progress?.percent, 100);
  assert.ok(st.startTime !== undefined && st.endTime !== undefined);
}

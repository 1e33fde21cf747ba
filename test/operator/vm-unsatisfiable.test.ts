// Specs the API server accepts but the cluster cannot satisfy: the VM gets a phase, a
// Ready condition and a Warning event that say why — and nothing else is created.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, condition, eventsFor, getVm, launcherPods, scratch, type Scratch, testVm, waitVm } from './vm-fixtures.ts';

void describe('VMs the cluster cannot run', { timeout: 10 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-unsat');
    operator = await startSuiteOperator(cluster, s, 'unsat');
  });

  after(async () => {
    await stopOperator(operator);
    await s.cleanup();
  });

  void it('a VM that fits on no node is Unschedulable with the reason, and no pod is created', async () => {
    apply(cluster, testVm(s, guest, { name: 'too-big', memory: '512Gi' }));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'too-big' }, 'Unschedulable', (v) => v.status?.phase === 'Unschedulable', 60_000);
    const ready = condition(vm, 'Ready');
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.reason, 'Unschedulable');
    assert.match(ready?.message ?? '', /0\/\d+ nodes are available: .*Insufficient memory/);
    const events = await eventually('a Warning event', () => {
      const e = eventsFor(cluster, s.namespace, 'too-big').filter((l) => l.startsWith('Unschedulable:'));
      return e.length > 0 ? e : undefined;
    }, 30_000);
    assert.match(events[0] ?? '', /Insufficient memory/);
    assert.equal(launcherPods(cluster, s.namespace, 'too-big').length, 0);
    const secret = cluster.kubectl(['get', 'secret', 'launcher-too-big', '-n', s.namespace, '--ignore-not-found', '-o', 'name']);
    assert.equal(secret.trim(), '', 'no Secret either');
  });

  void it('a VM on a StorageDomain that does not exist says so, and no pod is created', async () => {
    apply(cluster, testVm(s, guest, { name: 'no-domain', storageDomain: `missing-${s.runId}` }));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'no-domain' }, 'Failed for the missing domain', (v) => v.status?.phase === 'Failed', 60_000);
    const ready = condition(vm, 'Ready');
    assert.equal(ready?.reason, 'StorageDomainNotFound');
    assert.match(ready?.message ?? '', new RegExp(`StorageDomain missing-${s.runId} does not exist`));
    assert.equal(launcherPods(cluster, s.namespace, 'no-domain').length, 0);
    await new Promise((r) => setTimeout(r, 3000));
    const events = eventsFor(cluster, s.namespace, 'no-domain');
    assert.equal(events.filter((e) => e.startsWith('Failed:')).length, 1, `one event, not one per reconcile: ${events.join(' | ')}`);
    assert.equal(getVm(cluster, s.namespace, 'no-domain')?.spec.runStrategy, 'Always', 'the spec is untouched');
  });
});

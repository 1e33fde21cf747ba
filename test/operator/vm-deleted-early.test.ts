// A VM's launcher objects go with it even when the operator never ran its deletion
// path: the launcher Secret and pod are created in the same reconcile as the VM's
// finalizer (ADR 0112), so a VM can be deleted before the finalizer is on, and they are
// controlled by the VM, so the garbage collector removes them. On the local cluster with
// kwok nodes (the launcher pods are bound and reported Running, nothing runs).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { kwokVm, startKwokNodes, type KwokNodes } from '../support/kwok.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, getVm, scratch, type Scratch, TEST_RUN_LABEL } from './vm-fixtures.ts';

const owned = z.object({
  items: z.array(
    z.object({
      kind: z.string(),
      metadata: z.object({
        name: z.string(),
        labels: z.record(z.string(), z.string()).optional(),
        ownerReferences: z.array(z.object({ kind: z.string(), uid: z.string(), controller: z.boolean().optional() })).optional(),
      }),
    }),
  ),
});

void describe('launcher objects of a VM deleted before its finalizer', { timeout: 10 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let kwok: KwokNodes | undefined;
  let operator: OperatorProcess | undefined;

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-early-delete');
    kwok = await startKwokNodes(cluster, { label: { key: TEST_RUN_LABEL, value: s.runId }, count: 1, namePrefix: `kwok-${s.runId}`, runPods: true, dir: s.dir });
    operator = await startSuiteOperator(cluster, s, 'early-delete');
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    await s.cleanup();
    kwok?.stop();
  });

  const launcherObjects = (vmName?: string): z.infer<typeof owned>['items'] =>
    owned.parse(JSON.parse(cluster.kubectl(['get', 'pods,secrets', '-n', s.namespace, '-l', vmName === undefined ? 'keyvirt.io/vm' : `keyvirt.io/vm=${vmName}`, '-o', 'json']))).items;

  void it('VMs deleted the moment their launcher Secret appears (their finalizer set or not yet) leave no launcher pod or Secret behind', async (t) => {
    const names = Array.from({ length: 6 }, (_, i) => `early-${String(i)}`);
    let beforeFinalizer = 0;
    for (const name of names) {
      apply(cluster, kwokVm(s, name, s.runId));
      await eventually(`the launcher Secret of ${name}`, () => (launcherObjects(name).some((o) => o.kind === 'Secret') ? true : undefined), 60_000, 20);
      cluster.kubectl(['delete', 'virtualmachine', name, '-n', s.namespace, '--wait=false']);
      if (getVm(cluster, s.namespace, name) === undefined) beforeFinalizer += 1;
    }
    t.diagnostic(`${String(beforeFinalizer)} of ${String(names.length)} VMs were gone at once (deleted before their finalizer was on)`);
    await eventually('every VM gone', () => (names.every((n) => getVm(cluster, s.namespace, n) === undefined) ? true : undefined), 120_000);
    await eventually('no launcher object left', () => (launcherObjects().length === 0 ? true : undefined), 120_000);
  });

  void it('a VM whose finalizer is gone when it is deleted, with no operator to act, has its launcher pod and Secret collected', async () => {
    assert.ok(operator);
    apply(cluster, kwokVm(s, 'orphaned', s.runId));
    const created = await eventually(
      'the launcher pod and Secret created and the finalizer set',
      () => {
        const objects = launcherObjects('orphaned');
        const finalizers = getVm(cluster, s.namespace, 'orphaned')?.metadata.finalizers ?? [];
        return objects.length === 2 && finalizers.includes('keyvirt.io/graceful-stop') ? objects : undefined;
      },
      120_000,
    );
    const uid = getVm(cluster, s.namespace, 'orphaned')?.metadata.uid;
    for (const o of created) {
      const controller = o.metadata.ownerReferences?.find((r) => r.controller === true);
      assert.deepEqual([controller?.kind, controller?.uid], ['VirtualMachine', uid], `${o.kind} ${o.metadata.name} is controlled by the VM`);
    }
    // Only the garbage collector can act now: the VM goes at once, without its finalizer.
    await stopOperator(operator);
    operator = undefined;
    cluster.kubectl(['patch', 'virtualmachine', 'orphaned', '-n', s.namespace, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    cluster.kubectl(['delete', 'virtualmachine', 'orphaned', '-n', s.namespace, '--wait=false']);
    await eventually('the VM gone', () => (getVm(cluster, s.namespace, 'orphaned') === undefined ? true : undefined), 30_000);
    await eventually('its launcher pod and Secret collected', () => (launcherObjects('orphaned').length === 0 ? true : undefined), 120_000);
  });
});

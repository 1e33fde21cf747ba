// The controller's writes for each budget decision, with in-memory caches and an API
// fake that records them (the real API server: test/operator/drain.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type EvictionStrategy } from '@keyvirt/crds';
import { pino } from 'pino';
import type { Pod, PodDisruptionBudget } from '../runtime/core-schemas.ts';
import type { RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { DisruptionBudgetController } from './budget-controller.ts';
import { desiredBudget, LAUNCHER_MIN_AVAILABLE, namespaceNeedsBudget } from './budget-spec.ts';

const log = pino({ level: 'silent' });
const ctx = { signal: new AbortController().signal, log, reconcileId: 't' };

function vm(evictionStrategy: EvictionStrategy, name = 'web-1'): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', uid: `${name}-uid` },
    spec: { runStrategy: 'Always', evictionStrategy, template: { memory: { size: '256Mi' } } },
  });
}

interface Calls {
  create: { path: string; body: unknown }[];
  patch: { path: string; body: unknown }[];
  delete: { path: string; body: unknown }[];
  events: RecordedEvent[];
}

interface World {
  vms?: VirtualMachine[];
  budgets?: PodDisruptionBudget[];
  pods?: Pod[];
  createFails?: Error;
}

function harness(world: World): { controller: DisruptionBudgetController; calls: Calls } {
  const calls: Calls = { create: [], patch: [], delete: [], events: [] };
  const inNs = <T extends { metadata: { namespace?: string | undefined } }>(list: T[] | undefined, ns: string): T[] => (list ?? []).filter((o) => o.metadata.namespace === ns);
  const controller = new DisruptionBudgetController({
    caches: { vms: (ns) => inNs(world.vms, ns), needsBudget: (ns) => namespaceNeedsBudget(inNs(world.vms, ns)), budgets: (ns) => inNs(world.budgets, ns), pods: (ns) => inNs(world.pods, ns) },
    client: {
      create: (path, body) => {
        calls.create.push({ path, body });
        return world.createFails === undefined ? Promise.resolve({}) : Promise.reject(world.createFails);
      },
      patch: (path, body) => {
        calls.patch.push({ path, body });
        return Promise.resolve({});
      },
      delete: (path, body) => {
        calls.delete.push({ path, body });
        return Promise.resolve({});
      },
    },
    events: { record: (_t, e) => (calls.events.push(e), Promise.resolve()) },
  });
  return { controller, calls };
}

const theBudget = (uid = 'pdb-uid'): PodDisruptionBudget => {
  const b = desiredBudget('prod');
  b.metadata.uid = uid;
  return b;
};

/** A per-VM budget as ADR 0090's operator made it. */
function vmBudget(vmName: string): PodDisruptionBudget {
  return {
    metadata: { name: `launcher-${vmName}`, namespace: 'prod', uid: `pdb-${vmName}`, labels: { 'app.kubernetes.io/component': 'launcher-disruption-budget', 'app.kubernetes.io/managed-by': 'keyvirt-operator' } },
    spec: { minAvailable: 2, selector: { matchLabels: { 'keyvirt.io/vm-uid': `${vmName}-uid` } }, unhealthyPodEvictionPolicy: 'IfHealthyBudget' },
  };
}

function launcherPod(vmName: string, labelled: boolean): Pod {
  return {
    metadata: { name: `launcher-${vmName}`, namespace: 'prod', labels: { 'keyvirt.io/vm-uid': `${vmName}-uid`, ...(labelled ? { 'keyvirt.io/eviction-strategy': 'LiveMigrate' } : {}) } },
    spec: { containers: [] },
    status: { phase: 'Running' },
  };
}

void describe('DisruptionBudgetController', () => {
  void it('creates one budget for a namespace with LiveMigrate VMs, however many', async () => {
    const { controller, calls } = harness({ vms: [vm('LiveMigrate'), vm('LiveMigrate', 'web-2'), vm('Shutdown', 'batch-1')] });
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), {});
    assert.equal(calls.create.length, 1);
    assert.equal(calls.create[0]?.path, '/apis/policy/v1/namespaces/prod/poddisruptionbudgets');
    assert.deepEqual(calls.create[0]?.body, { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', ...desiredBudget('prod') });
    const body = calls.create[0]?.body as PodDisruptionBudget;
    assert.equal(body.spec?.minAvailable, LAUNCHER_MIN_AVAILABLE);
    assert.equal(body.metadata.ownerReferences, undefined, 'no VM owns it: it outlives any one of them');
  });

  void it('a namespace with only Shutdown VMs gets none', async () => {
    const { controller, calls } = harness({ vms: [vm('Shutdown')] });
    await controller.reconcile(ctx, 'prod');
    assert.equal(calls.create.length + calls.patch.length + calls.delete.length, 0);
  });

  void it('AlreadyExists once (a stale cache) is waited out without a word; twice, the name belongs to another object: reported once, nothing touched', async () => {
    const { controller, calls } = harness({ vms: [vm('LiveMigrate')], createFails: new KubeApiError(409, 'AlreadyExists', 'exists', { method: 'POST', path: '/' }) });
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), { requeueAfterMs: 10_000 });
    assert.equal(calls.events.length, 0);
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), { requeueAfterMs: 10_000 });
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), { requeueAfterMs: 10_000 });
    assert.equal(calls.patch.length + calls.delete.length, 0);
    assert.deepEqual(calls.events.map((e) => `${e.type} ${e.reason}`), ['Warning DisruptionBudgetConflict']);
  });

  void it('a refused creation followed by the budget in the cache is no conflict', async () => {
    const world: World = { vms: [vm('LiveMigrate')], createFails: new KubeApiError(409, 'AlreadyExists', 'exists', { method: 'POST', path: '/' }) };
    const { controller, calls } = harness(world);
    await controller.reconcile(ctx, 'prod');
    world.budgets = [theBudget()];
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), {});
    world.budgets = [];
    await controller.reconcile(ctx, 'prod');
    assert.equal(calls.events.length, 0, 'the refusal before the cache caught up was forgotten');
  });

  void it('rethrows other create failures for a rate-limited retry', async () => {
    const { controller } = harness({ vms: [vm('LiveMigrate')], createFails: new KubeApiError(403, 'Forbidden', 'no', { method: 'POST', path: '/' }) });
    await assert.rejects(controller.reconcile(ctx, 'prod'), /403 Forbidden/);
  });

  void it('never deletes the budget: the VMs that need it may belong to another operator (sharing the cluster by VM selector)', async () => {
    for (const vms of [[vm('Shutdown')], []]) {
      const { controller, calls } = harness({ vms, budgets: [theBudget()] });
      assert.deepEqual(await controller.reconcile(ctx, 'prod'), {});
      assert.equal(calls.create.length + calls.patch.length + calls.delete.length, 0);
    }
  });

  void it('patches a drifted spec back', async () => {
    const edited = theBudget();
    assert.ok(edited.spec);
    edited.spec.minAvailable = 1;
    const { controller, calls } = harness({ vms: [vm('LiveMigrate')], budgets: [edited] });
    await controller.reconcile(ctx, 'prod');
    assert.equal(calls.patch.length, 1);
    assert.match(JSON.stringify(calls.patch[0]?.body), new RegExp(`"minAvailable":${String(LAUNCHER_MIN_AVAILABLE)}`));
  });

  void it('removes per-VM budgets of an earlier operator for its VMs once the namespace budget exists and their pods carry the label', async () => {
    const { controller, calls } = harness({
      vms: [vm('LiveMigrate'), vm('LiveMigrate', 'web-2')],
      budgets: [theBudget(), vmBudget('web-1'), vmBudget('web-2'), vmBudget('other-operators')],
      pods: [launcherPod('web-1', true), launcherPod('web-2', false), launcherPod('other-operators', true)],
    });
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), { requeueAfterMs: 5_000 }, 'web-2 still waits for its label');
    assert.deepEqual(calls.delete.map((d) => d.path), ['/apis/policy/v1/namespaces/prod/poddisruptionbudgets/launcher-web-1']);
    assert.deepEqual(calls.delete[0]?.body, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'pdb-web-1' } });
  });

  void it('keeps per-VM budgets while the namespace budget does not exist yet', async () => {
    const { controller, calls } = harness({ vms: [vm('LiveMigrate')], budgets: [vmBudget('web-1')], pods: [launcherPod('web-1', true)] });
    await controller.reconcile(ctx, 'prod');
    assert.equal(calls.create.length, 1);
    assert.equal(calls.delete.length, 0);
  });

  void it('reads none of the namespace\'s VMs when its budget stands and no per-VM budget is left (each VM\'s creation queues the namespace)', async () => {
    const vms = Array.from({ length: 1000 }, (_, i) => vm('LiveMigrate', `web-${i}`));
    const cases: { name: string; budgets: PodDisruptionBudget[]; reads: number }[] = [
      { name: 'the budget stands', budgets: [theBudget()], reads: 0 },
      { name: 'a per-VM budget is left', budgets: [theBudget(), vmBudget('web-1')], reads: 1 },
    ];
    for (const c of cases) {
      let reads = 0;
      const controller = new DisruptionBudgetController({
        caches: { vms: () => (reads++, vms), needsBudget: () => true, budgets: () => c.budgets, pods: () => [] },
        client: { create: () => Promise.resolve({}), patch: () => Promise.resolve({}), delete: () => Promise.resolve({}) },
        events: { record: () => Promise.resolve() },
      });
      await controller.reconcile(ctx, 'prod');
      assert.equal(reads, c.reads, c.name);
    }
  });
});

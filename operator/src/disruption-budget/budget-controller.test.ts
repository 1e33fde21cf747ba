// The controller's writes for each budget decision, with in-memory caches and an API
// fake that records them (the real API server: test/operator/drain.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type EvictionStrategy } from '@keyvirt/crds';
import { pino } from 'pino';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import type { RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { DisruptionBudgetController } from './budget-controller.ts';
import { desiredBudget } from './budget-spec.ts';

const log = pino({ level: 'silent' });
const ctx = { signal: new AbortController().signal, log, reconcileId: 't' };

function vm(evictionStrategy: EvictionStrategy, uid = 'vm-uid'): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid },
    spec: { runStrategy: 'Always', evictionStrategy, template: { memory: { size: '256Mi' } } },
  });
}

interface Calls {
  create: { path: string; body: unknown }[];
  patch: { path: string; body: unknown }[];
  delete: { path: string; body: unknown }[];
  events: RecordedEvent[];
}

function harness(v: VirtualMachine | undefined, b: PodDisruptionBudget | undefined, createFails?: Error): { controller: DisruptionBudgetController; calls: Calls } {
  const calls: Calls = { create: [], patch: [], delete: [], events: [] };
  const controller = new DisruptionBudgetController({
    caches: { vm: (k) => (k === 'prod/web-1' ? v : undefined), budget: (k) => (k === 'prod/launcher-web-1' ? b : undefined) },
    client: {
      create: (path, body) => {
        calls.create.push({ path, body });
        return createFails === undefined ? Promise.resolve({}) : Promise.reject(createFails);
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

void describe('DisruptionBudgetController', () => {
  void it('creates the budget of a LiveMigrate VM in its namespace', async () => {
    const { controller, calls } = harness(vm('LiveMigrate'), undefined);
    assert.deepEqual(await controller.reconcile(ctx, 'prod/web-1'), {});
    assert.equal(calls.create.length, 1);
    assert.equal(calls.create[0]?.path, '/apis/policy/v1/namespaces/prod/poddisruptionbudgets');
    assert.deepEqual(calls.create[0]?.body, { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', ...desiredBudget(vm('LiveMigrate')) });
  });

  void it('takes AlreadyExists (a stale cache) as done', async () => {
    const { controller, calls } = harness(vm('LiveMigrate'), undefined, new KubeApiError(409, 'AlreadyExists', 'exists', { method: 'POST', path: '/' }));
    assert.deepEqual(await controller.reconcile(ctx, 'prod/web-1'), {});
    assert.equal(calls.create.length, 1);
  });

  void it('rethrows other create failures for a rate-limited retry', async () => {
    const { controller } = harness(vm('LiveMigrate'), undefined, new KubeApiError(403, 'Forbidden', 'no', { method: 'POST', path: '/' }));
    await assert.rejects(controller.reconcile(ctx, 'prod/web-1'), /403 Forbidden/);
  });

  void it('deletes the budget, guarded by its uid, when the VM switches to Shutdown', async () => {
    const existing = desiredBudget(vm('LiveMigrate'));
    assert.ok(existing);
    existing.metadata.uid = 'pdb-uid';
    const { controller, calls } = harness(vm('Shutdown'), existing);
    await controller.reconcile(ctx, 'prod/web-1');
    assert.equal(calls.delete[0]?.path, '/apis/policy/v1/namespaces/prod/poddisruptionbudgets/launcher-web-1');
    assert.deepEqual(calls.delete[0]?.body, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'pdb-uid' } });
  });

  void it('reports a budget of the same name owned by something else once, touches nothing and polls', async () => {
    const foreign = desiredBudget(vm('LiveMigrate', 'old-uid'));
    assert.ok(foreign);
    const { controller, calls } = harness(vm('LiveMigrate'), foreign);
    assert.deepEqual(await controller.reconcile(ctx, 'prod/web-1'), { requeueAfterMs: 10_000 });
    await controller.reconcile(ctx, 'prod/web-1');
    assert.equal(calls.create.length + calls.patch.length + calls.delete.length, 0);
    assert.deepEqual(calls.events.map((e) => e.reason), ['DisruptionBudgetConflict']);
  });

  void it('patches a drifted spec back', async () => {
    const edited = desiredBudget(vm('LiveMigrate'));
    assert.ok(edited?.spec);
    edited.spec.minAvailable = 1;
    const { controller, calls } = harness(vm('LiveMigrate'), edited);
    await controller.reconcile(ctx, 'prod/web-1');
    assert.equal(calls.patch.length, 1);
    assert.match(JSON.stringify(calls.patch[0]?.body), /"minAvailable":2/);
  });
});

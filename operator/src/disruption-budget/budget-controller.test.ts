// The removal of earlier operators' launcher budgets, with an in-memory cache and an API
// fake that records the deletions (the real API server: test/operator/drain.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { PodDisruptionBudget } from '../runtime/core-schemas.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { BudgetRemovalController } from './budget-controller.ts';

const ctx = { signal: new AbortController().signal, log: pino({ level: 'silent' }), reconcileId: 't' };

function budget(name: string, namespace = 'prod', deleting = false): PodDisruptionBudget {
  return { metadata: { name, namespace, uid: `${name}-uid`, ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) } };
}

function harness(budgets: PodDisruptionBudget[], fail?: Error): { controller: BudgetRemovalController; deleted: { path: string; body: unknown }[] } {
  const deleted: { path: string; body: unknown }[] = [];
  const controller = new BudgetRemovalController({
    budgets: (ns) => budgets.filter((b) => b.metadata.namespace === ns),
    client: {
      delete: (path, body) => {
        deleted.push({ path, body });
        return fail === undefined ? Promise.resolve({}) : Promise.reject(fail);
      },
    },
  });
  return { controller, deleted };
}

void describe('BudgetRemovalController', () => {
  void it("removes every launcher budget of the namespace, the namespace's and per-VM ones, each under its uid", async () => {
    const { controller, deleted } = harness([budget('keyvirt-launchers'), budget('launcher-web-1'), budget('keyvirt-launchers', 'other')]);
    assert.deepEqual(await controller.reconcile(ctx, 'prod'), {});
    assert.deepEqual(
      deleted.map((d) => d.path),
      ['/apis/policy/v1/namespaces/prod/poddisruptionbudgets/keyvirt-launchers', '/apis/policy/v1/namespaces/prod/poddisruptionbudgets/launcher-web-1'],
    );
    assert.deepEqual(deleted[0]?.body, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'keyvirt-launchers-uid' } });
  });

  void it('leaves a budget already being deleted, and a namespace with none, alone', async () => {
    const { controller, deleted } = harness([budget('keyvirt-launchers', 'prod', true)]);
    await controller.reconcile(ctx, 'prod');
    await controller.reconcile(ctx, 'empty');
    assert.equal(deleted.length, 0);
  });

  void it('takes a budget already gone or replaced (404, 409) as done, and retries on any other failure', async () => {
    for (const code of [404, 409]) {
      const { controller } = harness([budget('keyvirt-launchers')], new KubeApiError(code, code === 404 ? 'NotFound' : 'Conflict', 'gone', { method: 'DELETE', path: '/x' }));
      assert.deepEqual(await controller.reconcile(ctx, 'prod'), {});
    }
    const { controller } = harness([budget('keyvirt-launchers')], new KubeApiError(500, 'InternalError', 'etcd away', { method: 'DELETE', path: '/x' }));
    await assert.rejects(controller.reconcile(ctx, 'prod'), /etcd away/);
  });
});

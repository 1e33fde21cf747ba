import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MigrationPolicy, VirtualMachine, type MigrationPolicyStatus } from '@keyvirt/crds';
import { pino } from 'pino';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { MigrationPolicyController, type PolicyCaches } from './policy-controller.ts';
import { StatusSubresourceFake } from '../runtime/status-subresource-fake.ts';

const ctx = { signal: new AbortController().signal, log: pino({ level: 'silent' }), reconcileId: 'r' };

function vm(name: string, labels: Record<string, string>): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', labels },
    spec: { runStrategy: 'Halted', template: { memory: { size: '64Mi' } } },
  });
}

function setup(status?: MigrationPolicyStatus): { controller: MigrationPolicyController; patches: { path: string; body: unknown }[]; caches: PolicyCaches & { policyObj: MigrationPolicy } } {
  const policyObj = MigrationPolicy.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'MigrationPolicy',
    metadata: { name: 'web', uid: 'u1', generation: 2 },
    spec: { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { tier: 'gold' } } } },
    ...(status !== undefined ? { status } : {}),
  });
  const caches = {
    policyObj,
    policy: (name: string) => (name === 'web' ? caches.policyObj : undefined),
    policies: () => [caches.policyObj],
    vms: () => [vm('a', { app: 'web' }), vm('b', { app: 'db' })],
    namespace: (name: string) => (name === 'prod' ? { metadata: { name, labels: { tier: 'gold' } } } : undefined),
  };
  const patches: { path: string; body: unknown }[] = [];
  const client = {
    patch: (path: string, body: unknown): Promise<unknown> => {
      patches.push({ path, body });
      return Promise.resolve({});
    },
  };
  return { controller: new MigrationPolicyController({ caches, client, clock: new ManualClock(Date.parse('2026-01-01T00:00:00Z')) }), patches, caches };
}

void describe('MigrationPolicyController', () => {
  void it('writes the status through the status subresource, namespace labels included', async () => {
    const { controller, patches } = setup();
    await controller.reconcile(ctx, 'web');
    assert.equal(patches.length, 1);
    assert.equal(patches[0]?.path, '/apis/keyvirt.io/v1alpha1/migrationpolicies/web/status');
    const [op] = patches[0]?.body as [{ op: string; path: string; value: MigrationPolicyStatus }];
    assert.equal(op.path, '/status');
    assert.equal(op.value.matchedVirtualMachines, 1);
    assert.equal(op.value.observedGeneration, 2);
    assert.equal(op.value.conditions?.[0]?.message, 'applies to 1 VM');
  });

  void it('does not write again while the cache lags behind its own write, nor once it shows it', async () => {
    const { controller, patches, caches } = setup();
    await controller.reconcile(ctx, 'web');
    await controller.reconcile(ctx, 'web');
    assert.equal(patches.length, 1, 'the stale cache is not mistaken for a change');
    const [op] = patches[0]?.body as [{ value: MigrationPolicyStatus }];
    caches.policyObj = { ...caches.policyObj, status: op.value };
    await controller.reconcile(ctx, 'web');
    assert.equal(patches.length, 1);
  });

  void it('writes nothing for a policy that is gone, and treats NotFound on write as gone', async () => {
    const { controller, patches } = setup();
    await controller.reconcile(ctx, 'other');
    assert.equal(patches.length, 0);
    const failing = new MigrationPolicyController({
      caches: setup().caches,
      client: { patch: () => Promise.reject(new KubeApiError(404, 'NotFound', 'gone', { method: 'PATCH', path: '/x' })) },
      clock: new ManualClock(0),
    });
    assert.deepEqual(await failing.reconcile(ctx, 'web'), {});
  });
});

/** One policy on a fake API server with its optimistic concurrency: every write bumps resourceVersion; a stale precondition is 409. */
class PolicyObject extends StatusSubresourceFake<MigrationPolicyStatus, MigrationPolicy> {
  constructor() {
    super(20);
  }

  override cached(): MigrationPolicy {
    return MigrationPolicy.parse({
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'MigrationPolicy',
      metadata: { name: 'web', uid: 'u1', generation: 1, resourceVersion: String(this.resourceVersion) },
      spec: { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } } },
      ...(this.status === undefined ? {} : { status: this.status }),
    });
  }
}

void describe('MigrationPolicyController status writes (optimistic concurrency)', () => {
  function guarded(api: PolicyObject): { controller: MigrationPolicyController; world: { policy: MigrationPolicy; vms: VirtualMachine[] } } {
    const world = { policy: api.cached(), vms: [vm('a', { app: 'web' })] };
    const caches: PolicyCaches = {
      policy: (name) => (name === 'web' ? world.policy : undefined),
      policies: () => [world.policy],
      vms: () => world.vms,
      namespace: () => undefined,
    };
    return { controller: new MigrationPolicyController({ caches, client: api, clock: new ManualClock(Date.parse('2026-01-01T00:00:00Z')) }), world };
  }

  void it('guards each write with the version it was computed from, its own unseen write included', async () => {
    const api = new PolicyObject();
    const { controller, world } = guarded(api);
    await controller.reconcile(ctx, 'web');
    // The cache still shows version 20; a second VM changes the count: the write names the version the first one answered with.
    world.vms = [...world.vms, vm('c', { app: 'web' })];
    await controller.reconcile(ctx, 'web');
    assert.deepEqual(api.preconditions, ['20', '21']);
    assert.equal(api.status?.matchedVirtualMachines, 2);
  });

  void it('a status computed from a stale view gets 409, leaves the newer status, and goes through once retried from the cache', async () => {
    const api = new PolicyObject();
    const { controller, world } = guarded(api);
    // Another writer (a deposed leader, a user) moves the object on after the cache's copy.
    await api.patch('/status', [{ op: 'add', path: '/status', value: { matchedVirtualMachines: 7 } }]);
    await assert.rejects(controller.reconcile(ctx, 'web'), (err: unknown) => err instanceof KubeApiError && err.statusCode === 409);
    assert.deepEqual(api.status, { matchedVirtualMachines: 7 }, 'the newer status was not overwritten');
    world.policy = api.cached();
    await controller.reconcile(ctx, 'web');
    assert.equal(api.status?.matchedVirtualMachines, 1);
    assert.deepEqual(api.preconditions, [undefined, '20', '21']);
  });
});

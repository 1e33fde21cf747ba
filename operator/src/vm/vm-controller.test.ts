import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { VirtualMachine } from '@keyvirt/crds';
import { sleepOn } from '../runtime/clock.ts';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import type { EventSink, RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { LauncherFollowers } from './launcher-followers.ts';
import { LauncherObjects } from './launcher-objects.ts';
import { fitDecider } from './placement.ts';
import { VmStatusWriter } from './status-writer.ts';
import { LAUNCHER_EXPECTATION_MS, VmController } from './vm-controller.ts';
import { podListUsage } from '../scheduler/node-usage-ledger.ts';

const log = pino({ level: 'silent' });

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', generation: 1, resourceVersion: '5', finalizers: ['keyvirt.io/graceful-stop'] },
  spec: { runStrategy: 'Always', template: { memory: { size: '256Mi' }, allowEmulation: true } },
});

const node: Node = {
  metadata: { name: 'node-a', labels: { 'kubernetes.io/hostname': 'node-a' } },
  status: { allocatable: { cpu: '8', memory: '16Gi' }, conditions: [{ type: 'Ready', status: 'True' }] },
};

/** Records what the controller asks of the API server; pod creation can be made to fail. */
class FakeApi {
  calls: string[] = [];
  statusPatches: unknown[] = [];
  /** Bodies of the patches of the VM object itself. */
  bodies: unknown[] = [];
  /** Bodies of other requests (PUT, label PATCH). */
  requestBodies: unknown[] = [];
  podCreate: 'ok' | 'exists' | 'fail' = 'ok';
  vmPatch: 'ok' | 'conflict' = 'ok';

  get(path: string): Promise<unknown> {
    this.calls.push(`GET ${path}`);
    return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
  }
  create(path: string): Promise<unknown> {
    this.calls.push(`POST ${path}`);
    if (path.endsWith('/pods') && this.podCreate !== 'ok') {
      const code = this.podCreate === 'exists' ? 409 : 500;
      return Promise.reject(new KubeApiError(code, code === 409 ? 'AlreadyExists' : 'InternalError', 'x', { method: 'POST', path }));
    }
    return Promise.resolve({});
  }
  request(method: string, path: string, options?: { body?: unknown }): Promise<unknown> {
    this.calls.push(`${method} ${path}`);
    this.requestBodies.push(options?.body);
    return Promise.resolve({});
  }
  delete(path: string): Promise<unknown> {
    this.calls.push(`DELETE ${path}`);
    return Promise.resolve({});
  }
  patch(path: string, body: unknown): Promise<unknown> {
    this.calls.push(`PATCH ${path}`);
    if (path.endsWith('/status')) this.statusPatches.push(body);
    else {
      this.bodies.push(body);
      if (this.vmPatch === 'conflict') return Promise.reject(new KubeApiError(409, 'Conflict', 'x', { method: 'PATCH', path }));
    }
    return Promise.resolve({});
  }
}

function controller(api: FakeApi, pods: Map<string, Pod>, theVm: VirtualMachine = vm): { c: VmController; events: RecordedEvent[]; clock: ManualClock } {
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
  const events: RecordedEvent[] = [];
  const sink: EventSink = { record: (_t, e) => Promise.resolve(void events.push(e)) };
  const c = new VmController({
    caches: {
      vm: (k) => (k === 'prod/web-1' ? theVm : undefined),
      nodes: () => [node],
      nodeUsage: () => podListUsage([...pods.values()]),
      podsOfVm: () => [...pods.values()],
      latestMigration: () => undefined,
      migrationUids: () => new Set(['mig-uid']),
    },
    disks: { storageDomain: () => undefined, claim: () => Promise.resolve(undefined) },
    placement: fitDecider,
    launchers: new LauncherObjects(api),
    followers: new LauncherFollowers({ log, sleep: sleepOn(clock), onChange: () => undefined }),
    statusWriter: new VmStatusWriter(api, sink),
    vmWriter: {
      patch: async (_vm, body) => {
        await api.patch('/apis/keyvirt.io/v1alpha1/namespaces/prod/virtualmachines/web-1', body);
      },
    },
    events: sink,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: false },
    clock,
    onTokenMissing: () => undefined,
  });
  return { c, events, clock };
}

const ctx = { signal: new AbortController().signal, log, reconcileId: 'test' };

void describe('VmController', () => {
  void it('creates the Secret, then the launcher pod: one event, the status once the cache shows the pod', async () => {
    const api = new FakeApi();
    const pods = new Map<string, Pod>();
    const { c, events } = controller(api, pods);
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), {});
    assert.deepEqual(api.calls, ['POST /api/v1/namespaces/prod/secrets', 'POST /api/v1/namespaces/prod/pods'], 'no read of a Secret that does not exist yet');
    assert.equal(api.statusPatches.length, 0, 'no status naming no pod, to be rewritten at once');
    assert.deepEqual(events.map((e) => e.reason), ['LauncherCreated']);
    // Reconciled again before the cache shows the pod (the status write's own watch event, say): nothing is sent.
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), { requeueAfterMs: LAUNCHER_EXPECTATION_MS });
    assert.equal(api.calls.length, 2);
    // The pod in the cache, not bound yet: one status write, no second event for the same start.
    pods.set('prod/launcher-web-1', { ...launcherPod('launcher-web-1', 'pod-uid', 'Pending', '2026-01-01T00:00:00Z'), spec: { containers: [{ name: 'launcher' }] } });
    await c.reconcile(ctx, 'prod/web-1');
    assert.equal(api.statusPatches.length, 1);
    assert.match(JSON.stringify(api.statusPatches[0]), /"phase":"Scheduling".*"launcherPod":"launcher-web-1"/);
    assert.deepEqual(events.map((e) => e.reason), ['LauncherCreated']);
  });

  void it('a VM without its finalizer gets it beside the launcher creation, in the same reconcile', async () => {
    const api = new FakeApi();
    const fresh = VirtualMachine.parse({ ...vm, metadata: { ...vm.metadata, finalizers: undefined } });
    const { c } = controller(api, new Map(), fresh);
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), {});
    assert.deepEqual([...api.calls].sort(), [
      'PATCH /apis/keyvirt.io/v1alpha1/namespaces/prod/virtualmachines/web-1',
      'POST /api/v1/namespaces/prod/pods',
      'POST /api/v1/namespaces/prod/secrets',
    ]);
    assert.deepEqual(api.bodies[0], { metadata: { finalizers: ['keyvirt.io/graceful-stop'], resourceVersion: '5' } });
  });

  void it('a VM without its finalizer that is not to start gets only the finalizer', async () => {
    const api = new FakeApi();
    const halted = VirtualMachine.parse({ ...vm, metadata: { ...vm.metadata, finalizers: undefined }, spec: { ...vm.spec, runStrategy: 'Halted' } });
    const { c } = controller(api, new Map(), halted);
    await c.reconcile(ctx, 'prod/web-1');
    assert.deepEqual(api.calls, ['PATCH /apis/keyvirt.io/v1alpha1/namespaces/prod/virtualmachines/web-1']);
  });

  void it('a finalizer write that fails fails the reconcile for a retry; the launcher created beside it is expected, not created again', async () => {
    const api = new FakeApi();
    api.vmPatch = 'conflict';
    const fresh = VirtualMachine.parse({ ...vm, metadata: { ...vm.metadata, finalizers: undefined } });
    const { c } = controller(api, new Map(), fresh);
    await assert.rejects(c.reconcile(ctx, 'prod/web-1'), (err: unknown) => err instanceof KubeApiError && err.statusCode === 409);
    assert.equal(api.calls.filter((x) => x.startsWith('POST')).length, 2);
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), { requeueAfterMs: LAUNCHER_EXPECTATION_MS });
    assert.equal(api.calls.filter((x) => x.startsWith('POST')).length, 2);
  });

  void it('a created pod the cache never shows is created again (AlreadyExists) once its expectation ends', async () => {
    const api = new FakeApi();
    const { c, clock } = controller(api, new Map());
    await c.reconcile(ctx, 'prod/web-1');
    clock.advance(LAUNCHER_EXPECTATION_MS);
    api.podCreate = 'exists';
    await c.reconcile(ctx, 'prod/web-1');
    assert.equal(api.calls.filter((x) => x === 'POST /api/v1/namespaces/prod/pods').length, 2);
  });

  void it('labels a live launcher pod with the eviction strategy of the VM when they differ (the namespace budget selects by it), once', async () => {
    const api = new FakeApi();
    const running = launcherPod('launcher-web-1', 'pod-uid', 'Running', '2026-01-01T00:00:00Z');
    const pods = new Map<string, Pod>([['prod/launcher-web-1', { ...running, metadata: { ...running.metadata, resourceVersion: '41' } }]]);
    const { c } = controller(api, pods);
    await c.reconcile(ctx, 'prod/web-1');
    assert.deepEqual(api.calls.filter((x) => x.startsWith('PATCH /api/v1')), ['PATCH /api/v1/namespaces/prod/pods/launcher-web-1']);
    assert.deepEqual(api.requestBodies[0], { metadata: { labels: { 'keyvirt.io/eviction-strategy': 'LiveMigrate' }, resourceVersion: '41' } });
    const labelled = { ...running, metadata: { ...running.metadata, labels: { ...running.metadata.labels, 'keyvirt.io/eviction-strategy': 'LiveMigrate' } } };
    pods.set('prod/launcher-web-1', labelled);
    await c.reconcile(ctx, 'prod/web-1');
    assert.equal(api.calls.filter((x) => x.startsWith('PATCH /api/v1')).length, 1, 'nothing to do once the label matches');
  });

  void it('a stale cache meets AlreadyExists: no second pod, no error, no second creation event', async () => {
    const api = new FakeApi();
    api.podCreate = 'exists';
    const { c, events } = controller(api, new Map());
    await c.reconcile(ctx, 'prod/web-1');
    assert.equal(api.calls.filter((x) => x === 'POST /api/v1/namespaces/prod/pods').length, 1);
    assert.ok(!events.some((e) => e.reason === 'LauncherCreated'));
  });

  void it('writes the status even when creating the pod fails, then fails the reconcile for a retry', async () => {
    const api = new FakeApi();
    api.podCreate = 'fail';
    const { c } = controller(api, new Map());
    await assert.rejects(c.reconcile(ctx, 'prod/web-1'), KubeApiError);
    assert.equal(api.statusPatches.length, 1, 'status written before the error propagates');
  });

  void it('an unschedulable VM gets a reason and a Warning event, and nothing is created', async () => {
    const api = new FakeApi();
    const big = VirtualMachine.parse({ ...vm, spec: { ...vm.spec, template: { ...vm.spec.template, memory: { size: '64Gi' } } } });
    const { c, events } = controller(api, new Map(), big);
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), { requeueAfterMs: 30_000 });
    assert.deepEqual(api.calls.filter((x) => x.startsWith('POST')), [], 'no Secret, no pod');
    const status = JSON.stringify(api.statusPatches[0]);
    assert.match(status, /"phase":"Unschedulable"/);
    assert.match(status, /0\/1 nodes are available: 1 Insufficient memory/);
    assert.ok(events.some((e) => e.reason === 'Unschedulable' && e.type === 'Warning'));
  });

  void it('during a migration hand-over (source finished, target not yet promoted) nothing is created or deleted', async () => {
    const api = new FakeApi();
    const pods = new Map<string, Pod>([
      ['prod/launcher-web-1', launcherPod('launcher-web-1', 'src-uid', 'Succeeded', '2026-01-01T00:00:00Z')],
      ['prod/launcher-web-1-t', launcherPod('launcher-web-1-t', 'tgt-uid', 'Running', '2026-01-01T00:01:00Z', 'mig-uid')],
    ]);
    const { c } = controller(api, pods);
    await c.reconcile(ctx, 'prod/web-1');
    assert.deepEqual(api.calls.filter((x) => x.startsWith('POST') || x.startsWith('DELETE')), []);
    assert.match(JSON.stringify(api.statusPatches[0]), /"phase":"Migrating"/);
  });

  void it('after the promotion the target is the launcher and the finished source pod is removed, nothing created', async () => {
    const api = new FakeApi();
    const pods = new Map<string, Pod>([
      ['prod/launcher-web-1', launcherPod('launcher-web-1', 'src-uid', 'Succeeded', '2026-01-01T00:00:00Z')],
      ['prod/launcher-web-1-t', launcherPod('launcher-web-1-t', 'tgt-uid', 'Running', '2026-01-01T00:01:00Z')],
    ]);
    const { c } = controller(api, pods);
    await c.reconcile(ctx, 'prod/web-1');
    assert.deepEqual(api.calls.filter((x) => x.startsWith('POST') || x.startsWith('DELETE')), ['DELETE /api/v1/namespaces/prod/pods/launcher-web-1']);
    assert.match(JSON.stringify(api.statusPatches[0]), /"launcherPod":"launcher-web-1-t"/);
  });
});

function launcherPod(name: string, uid: string, phase: string, created: string, migrationUid?: string): Pod {
  return {
    metadata: {
      name,
      namespace: 'prod',
      uid,
      creationTimestamp: created,
      labels: { 'keyvirt.io/vm': 'web-1', 'keyvirt.io/vm-uid': 'vm-uid', ...(migrationUid === undefined ? {} : { 'keyvirt.io/migration-target': migrationUid }) },
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid: 'vm-uid', controller: true }],
    },
    spec: { nodeName: 'node-a', containers: [{ name: 'launcher' }] },
    status: { phase, podIP: '10.0.0.9' },
  };
}

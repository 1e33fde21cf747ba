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
import { VmController } from './vm-controller.ts';

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
  podCreate: 'ok' | 'exists' | 'fail' = 'ok';

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
  request(method: string, path: string): Promise<unknown> {
    this.calls.push(`${method} ${path}`);
    return Promise.resolve({});
  }
  delete(path: string): Promise<unknown> {
    this.calls.push(`DELETE ${path}`);
    return Promise.resolve({});
  }
  patch(path: string, body: unknown): Promise<unknown> {
    this.calls.push(`PATCH ${path}`);
    if (path.endsWith('/status')) this.statusPatches.push(body);
    return Promise.resolve({});
  }
}

function controller(api: FakeApi, pods: Map<string, Pod>, theVm: VirtualMachine = vm): { c: VmController; events: RecordedEvent[] } {
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
  const events: RecordedEvent[] = [];
  const sink: EventSink = { record: (_t, e) => Promise.resolve(void events.push(e)) };
  const c = new VmController({
    caches: {
      vm: (k) => (k === 'prod/web-1' ? theVm : undefined),
      nodes: () => [node],
      pods: () => [...pods.values()],
      podsOfVm: () => [...pods.values()],
      latestMigration: () => undefined,
      migrationUids: () => new Set(['mig-uid']),
    },
    disks: { storageDomain: () => undefined, claim: () => Promise.resolve(undefined) },
    placement: fitDecider,
    launchers: new LauncherObjects(api),
    followers: new LauncherFollowers({ log, sleep: sleepOn(clock), onChange: () => undefined }),
    statusWriter: new VmStatusWriter(api, sink),
    vmWriter: { patch: () => Promise.resolve() },
    events: sink,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: false },
    clock,
    onTokenMissing: () => undefined,
  });
  return { c, events };
}

const ctx = { signal: new AbortController().signal, log, reconcileId: 'test' };

void describe('VmController', () => {
  void it('creates the Secret, then the launcher pod, and reports Scheduling', async () => {
    const api = new FakeApi();
    const { c, events } = controller(api, new Map());
    assert.deepEqual(await c.reconcile(ctx, 'prod/web-1'), {});
    const posts = api.calls.filter((x) => x.startsWith('POST'));
    assert.deepEqual(posts, ['POST /api/v1/namespaces/prod/secrets', 'POST /api/v1/namespaces/prod/pods']);
    assert.equal(api.statusPatches.length, 1);
    assert.match(JSON.stringify(api.statusPatches[0]), /"phase":"Scheduling"/);
    assert.deepEqual(events.map((e) => e.reason), ['LauncherCreated', 'Scheduling']);
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

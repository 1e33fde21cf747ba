import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { StorageDomain, VirtualMachine } from '@keyvirt/crds';
import type { Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Node, Pod } from '../runtime/core-schemas.ts';
import type { EventSink, RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { LauncherObjects } from '../vm/launcher-objects.ts';
import { fitDecider } from '../vm/placement.ts';
import { HaController } from './ha-controller.ts';
import { podListUsage } from '../scheduler/node-usage-ledger.ts';

const log = pino({ level: 'silent' });
const ctx = { signal: new AbortController().signal, log, reconcileId: 'test' };
const start = Date.parse('2026-01-01T00:00:00Z');

function haVm(name: string, priority: number, annotations: Record<string, string> = {}): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', uid: `${name}-uid`, resourceVersion: '7', annotations },
    spec: {
      runStrategy: 'Always',
      highAvailability: { enabled: true, priority },
      template: { memory: { size: '256Mi' }, allowEmulation: true, disks: [{ name: 'root', storageDomain: { name: 'shared', size: '1Gi', format: 'qcow2' } }] },
    },
  });
}

const domain = StorageDomain.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'StorageDomain',
  metadata: { name: 'shared' },
  spec: { type: 'posix', posix: { path: '/var/lib/keyvirt/shared' } },
  status: {
    phase: 'Active',
    disks: ['web', 'low', 'high'].map((vmName) => ({ namespace: 'prod', vmName, diskName: 'root', vmUid: `${vmName}-uid` })),
  },
});

function nodeOf(name: string, ready: boolean, taints: { key: string; effect: string }[] = []): Node {
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    spec: { taints },
    status: { allocatable: { cpu: '8', memory: '16Gi' }, conditions: [{ type: 'Ready', status: ready ? 'True' : 'Unknown' }] },
  };
}

function launcherPod(vm: string, name: string, uid: string, node: string, at: { created: string; replaces?: string }): Pod {
  const { created, replaces } = at;
  return {
    metadata: {
      name,
      namespace: 'prod',
      uid,
      creationTimestamp: created,
      labels: { 'keyvirt.io/vm': vm, 'keyvirt.io/vm-uid': `${vm}-uid`, ...(replaces === undefined ? {} : { 'keyvirt.io/ha-replacement': replaces }) },
      annotations: { 'keyvirt.io/storage-lease': 'shared', ...(replaces === undefined ? {} : { 'keyvirt.io/ha-replaced': replaces }) },
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: vm, uid: `${vm}-uid`, controller: true }],
    },
    spec: { nodeName: node, containers: [{ name: 'launcher' }] },
    status: { phase: 'Running', podIP: '10.0.0.9' },
  };
}

/** The API server as far as the controller uses it: every write recorded with its body. */
class FakeApi {
  writes: { call: string; body: unknown }[] = [];
  get(path: string): Promise<unknown> {
    if (path.endsWith('/secrets/launcher-web') || path.endsWith('/secrets/launcher-low') || path.endsWith('/secrets/launcher-high')) {
      const vm = path.split('/').at(-1)?.replace('launcher-', '') ?? '';
      return Promise.resolve({
        metadata: {
          name: `launcher-${vm}`,
          namespace: 'prod',
          ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: vm, uid: `${vm}-uid`, controller: true }],
        },
        data: { token: Buffer.from('tok').toString('base64') },
      });
    }
    return Promise.reject(new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path }));
  }
  create(path: string, body: unknown): Promise<unknown> {
    this.writes.push({ call: `POST ${path}`, body });
    return Promise.resolve({});
  }
  request(method: string, path: string, opts?: { body?: unknown }): Promise<unknown> {
    this.writes.push({ call: `${method} ${path}`, body: opts?.body });
    return Promise.resolve({});
  }
  delete(path: string, body?: unknown): Promise<unknown> {
    this.writes.push({ call: `DELETE ${path}`, body });
    return Promise.resolve({});
  }
  calls(prefix: string): string[] {
    return this.writes.map((w) => w.call).filter((c) => c.startsWith(prefix));
  }
}

interface Harness {
  c: HaController;
  api: FakeApi;
  events: RecordedEvent[];
  promoted: string[];
  vmPatches: { vm: string; body: unknown }[];
  restarts: number[];
  silent: Map<string, number>;
  replacementStatus: Map<string, LauncherStatus>;
}

function harness(vms: VirtualMachine[], pods: Pod[], nodes: Node[], patchGate?: (vm: string) => Promise<void>): Harness {
  const api = new FakeApi();
  const events: RecordedEvent[] = [];
  const promoted: string[] = [];
  const vmPatches: { vm: string; body: unknown }[] = [];
  const restarts: number[] = [];
  const silent = new Map<string, number>();
  const replacementStatus = new Map<string, LauncherStatus>();
  const sink: EventSink = { record: (t, e) => Promise.resolve(void events.push({ ...e, note: `${t.metadata.name}: ${e.note}` })) };
  const clock = new ManualClock(start);
  const c = new HaController({
    caches: {
      vm: (k) => vms.find((v) => `prod/${v.metadata.name}` === k),
      nodes: () => nodes,
      nodeUsage: () => podListUsage(pods),
      podsOfVm: (vm) => pods.filter((p) => p.metadata.labels?.['keyvirt.io/vm'] === vm.metadata.name),
      migrationUids: () => new Set(),
    },
    disks: { storageDomain: (n) => (n === 'shared' ? domain : undefined), claim: () => Promise.resolve(undefined) },
    placement: fitDecider,
    launchers: new LauncherObjects(api),
    current: { silentMs: (key) => silent.get(key) },
    replacements: { ensure: () => undefined, forget: () => undefined, latest: (_k, uid) => replacementStatus.get(uid) },
    writer: { promote: (pod) => Promise.resolve(void promoted.push(pod.metadata.name)) },
    vmWriter: {
      patch: async (vm, body) => {
        await patchGate?.(vm.metadata.name);
        vmPatches.push({ vm: vm.metadata.name, body });
      },
    },
    events: sink,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
    budget: { maxRestarts: 3, windowMs: 600_000 },
    clock,
    observer: { onHaRestart: () => restarts.push(1) },
    onTokenMissing: () => undefined,
  });
  return { c, api, events, promoted, vmPatches, restarts, silent, replacementStatus };
}

function podBody(h: Harness): { metadata: { name: string; labels: Record<string, string> }; spec: { affinity: unknown; containers: { env?: unknown[] }[] } } {
  const w = h.api.writes.find((x) => x.call === 'POST /api/v1/namespaces/prod/pods');
  assert.ok(w !== undefined, 'a pod was created');
  return w.body as ReturnType<typeof podBody>;
}

function secretConfig(h: Harness): { lease?: { path: string; nodeFenced: boolean }; mode: string } {
  const w = h.api.writes.find((x) => x.call === 'POST /api/v1/namespaces/prod/secrets');
  assert.ok(w !== undefined, 'a Secret was created');
  const data = (w.body as { data: Record<string, string> }).data;
  return JSON.parse(Buffer.from(data['config.json'] ?? '', 'base64').toString('utf8')) as ReturnType<typeof secretConfig>;
}

void describe('HaController', () => {
  void it('a silent launcher gets a replacement off its node: counted in the budget, labelled, lease config, pod UID from the downward API', async () => {
    const old = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const h = harness([haVm('web', 0)], [old], [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 3000);
    await h.c.reconcile(ctx, 'prod/web');
    const pod = podBody(h);
    assert.equal(pod.metadata.labels['keyvirt.io/ha-replacement'], 'old-uid');
    assert.match(pod.metadata.name, /^launcher-web-[0-9a-f]{10}$/);
    assert.match(JSON.stringify(pod.spec.affinity), /"values":\["n2"\]/, 'placed on the other node');
    assert.match(JSON.stringify(pod.spec.containers[0]?.env), /KEYVIRT_POD_UID.*metadata\.uid/);
    const config = secretConfig(h);
    assert.deepEqual(config.lease, { path: '/var/lib/keyvirt/lease/lease', nodeFenced: false });
    assert.equal(config.mode, 'run');
    assert.equal(h.vmPatches.length, 1);
    assert.deepEqual(h.vmPatches[0]?.body, [{ op: 'add', path: '/metadata/annotations/keyvirt.io~1ha-restarts', value: '[1767225600000]' }]);
    assert.deepEqual(h.events.map((e) => e.reason), ['HADetectedFailure', 'HAReplacementCreated']);
  });

  void it('a failed launcher pod of an HA VM (self-fenced) is replaced off its node at once', async () => {
    const failed: Pod = { ...launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' }), status: { phase: 'Failed' } };
    const h = harness([haVm('web', 0)], [failed], [nodeOf('n1', true), nodeOf('n2', true)]);
    await h.c.reconcile(ctx, 'prod/web');
    assert.equal(podBody(h).metadata.labels['keyvirt.io/ha-replacement'], 'old-uid');
    assert.match(JSON.stringify(podBody(h).spec.affinity), /"values":\["n2"\]/);
    assert.match(h.events[0]?.note ?? '', /launcher pod launcher-web on node n1 failed/);
  });

  void it('a second restart is counted guarded by the value seen (JSON patch test), not by the resourceVersion', async () => {
    const before = JSON.stringify([start - 60_000]);
    const h = harness([haVm('web', 0, { 'keyvirt.io/ha-restarts': before })], [launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' })], [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 3000);
    await h.c.reconcile(ctx, 'prod/web');
    const path = '/metadata/annotations/keyvirt.io~1ha-restarts';
    assert.deepEqual(h.vmPatches[0]?.body, [{ op: 'test', path, value: before }, { op: 'replace', path, value: JSON.stringify([start - 60_000, start]) }]);
    await h.c.reconcile(ctx, 'prod/web');
    assert.equal(h.vmPatches.length, 1, 'a stale cache does not count the same replaced pod twice');
  });

  void it('a launcher heard recently on a NotReady node is not replaced', async () => {
    const h = harness([haVm('web', 0)], [launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' })], [nodeOf('n1', false), nodeOf('n2', true)]);
    h.silent.set('prod/web', 100);
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.api.calls('POST'), []);
  });

  void it('a fenced node: the replacement claims at once (nodeFenced), and never lands on a fenced node', async () => {
    const oos = [{ key: 'node.kubernetes.io/out-of-service', effect: 'NoExecute' }];
    const h = harness([haVm('web', 0)], [launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' })], [nodeOf('n1', false, oos), nodeOf('n3', true, oos), nodeOf('n2', true)]);
    await h.c.reconcile(ctx, 'prod/web');
    assert.equal(secretConfig(h).lease?.nodeFenced, true);
    assert.match(JSON.stringify(podBody(h).spec.affinity), /"values":\["n2"\]/);
  });

  void it('an exhausted budget: no replacement, one Warning event over several reconciles', async () => {
    const times = JSON.stringify([start - 3000, start - 2000, start - 1000]);
    const h = harness([haVm('web', 0, { 'keyvirt.io/ha-restarts': times })], [launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' })], [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 3000);
    await h.c.reconcile(ctx, 'prod/web');
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.api.calls('POST'), []);
    assert.deepEqual(h.events.map((e) => e.reason), ['HARestartBudgetExhausted']);
  });

  void it('the replacement holds the lease and runs: promoted, old pod force-deleted, events and the counter', async () => {
    const old = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const replacement = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2026-01-01T00:00:05Z', replaces: 'old-uid' });
    const h = harness([haVm('web', 0)], [old, replacement], [nodeOf('n1', false), nodeOf('n2', true)]);
    h.silent.set('prod/web', 9000);
    h.replacementStatus.set('new-uid', { phase: 'Running', lease: { state: 'Held', generation: 3, takeover: true } } as LauncherStatus);
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.promoted, ['launcher-web-abc']);
    const del = h.api.writes.find((w) => w.call === 'DELETE /api/v1/namespaces/prod/pods/launcher-web');
    assert.ok(del !== undefined, 'old pod deleted');
    assert.deepEqual((del.body as { gracePeriodSeconds?: number; preconditions: { uid: string } }).gracePeriodSeconds, 0);
    assert.equal((del.body as { preconditions: { uid: string } }).preconditions.uid, 'old-uid');
    assert.ok(h.api.calls('DELETE').includes('DELETE /api/v1/namespaces/prod/secrets/launcher-web-abc'), 'the replacement Secret goes');
    assert.deepEqual(h.events.map((e) => e.reason), ['HALeaseAcquired', 'HARestarted']);
    assert.match(h.events[0]?.note ?? '', /generation 3, taken over/);
    assert.equal(h.restarts.length, 1);
  });

  void it('the old launcher heard again before the lease moved: the replacement is deleted', async () => {
    const old = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const replacement = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2026-01-01T00:00:05Z', replaces: 'old-uid' });
    const h = harness([haVm('web', 0)], [old, replacement], [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 200);
    h.replacementStatus.set('new-uid', { phase: 'Starting', lease: { state: 'WaitingForExpiry', holderSilentMs: 3000 } } as LauncherStatus);
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.api.calls('DELETE'), ['DELETE /api/v1/namespaces/prod/pods/launcher-web-abc', 'DELETE /api/v1/namespaces/prod/secrets/launcher-web-abc']);
    assert.deepEqual(h.promoted, []);
    assert.deepEqual(h.events.map((e) => e.reason), ['HAReplacementDeleted']);
  });

  void it('a non-HA Always VM on a fenced node: its pod is force-deleted; on a dead unfenced node it stays', async () => {
    const plain = VirtualMachine.parse({ ...haVm('web', 0), spec: { ...haVm('web', 0).spec, highAvailability: { enabled: false, priority: 0 } } });
    const pod = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const dead = harness([plain], [pod], [nodeOf('n1', false), nodeOf('n2', true)]);
    dead.silent.set('prod/web', 60_000);
    await dead.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(dead.api.writes, []);
    const fenced = harness([plain], [pod], [{ ...nodeOf('n1', false), metadata: { name: 'n1', annotations: { 'keyvirt.io/node-fenced': 'true' } } }, nodeOf('n2', true)]);
    await fenced.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(fenced.api.calls(''), ['DELETE /api/v1/namespaces/prod/pods/launcher-web']);
    assert.equal((fenced.api.writes[0]?.body as { gracePeriodSeconds?: number }).gracePeriodSeconds, 0);
    assert.deepEqual(fenced.events.map((e) => e.reason), ['NodeFenced']);
  });

  void it('priority: a lower-priority VM waits while a higher one is being replaced', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const pods = [launcherPod('high', 'launcher-high', 'h-uid', 'n1', { created: '2026-01-01T00:00:00Z' }), launcherPod('low', 'launcher-low', 'l-uid', 'n1', { created: '2026-01-01T00:00:00Z' })];
    const h = harness([haVm('high', 100), haVm('low', 1)], pods, [nodeOf('n1', false), nodeOf('n2', true)], (vm) => (vm === 'high' ? gate : Promise.resolve()));
    h.silent.set('prod/high', 5000);
    h.silent.set('prod/low', 5000);
    const high = h.c.reconcile(ctx, 'prod/high');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await h.c.reconcile(ctx, 'prod/low'), { requeueAfterMs: 250 }, 'low waits behind high');
    assert.deepEqual(h.api.calls('POST /api/v1/namespaces/prod/pods'), []);
    release();
    await high;
    await h.c.reconcile(ctx, 'prod/low');
    const created = h.api.writes.filter((w) => w.call === 'POST /api/v1/namespaces/prod/pods').map((w) => (w.body as { metadata: { labels: Record<string, string> } }).metadata.labels['keyvirt.io/vm']);
    assert.deepEqual(created, ['high', 'low']);
  });

  void it('a terminating replacement that holds the lease and runs is never promoted, and the old pod is kept', async () => {
    const old = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const base = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2026-01-01T00:00:05Z', replaces: 'old-uid' });
    const terminating: Pod = { ...base, metadata: { ...base.metadata, deletionTimestamp: '2026-01-01T00:00:20Z' } };
    const h = harness([haVm('web', 0)], [old, terminating], [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 100);
    h.replacementStatus.set('new-uid', { phase: 'Running', lease: { state: 'Held', generation: 3, takeover: true } } as LauncherStatus);
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.promoted, []);
    assert.deepEqual(h.api.calls('DELETE'), [], 'neither the old pod force-deleted nor the terminating one deleted again');
  });

  void it('the replacement is deleted once, not on every reconcile while the cache lags or it terminates', async () => {
    const old = launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2026-01-01T00:00:00Z' });
    const replacement = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2026-01-01T00:00:05Z', replaces: 'old-uid' });
    const pods = [old, replacement];
    const h = harness([haVm('web', 0)], pods, [nodeOf('n1', true), nodeOf('n2', true)]);
    h.silent.set('prod/web', 200);
    h.replacementStatus.set('new-uid', { phase: 'Starting', lease: { state: 'WaitingForExpiry', holderSilentMs: 3000 } } as LauncherStatus);
    for (let i = 0; i < 3; i++) await h.c.reconcile(ctx, 'prod/web');
    pods[1] = { ...replacement, metadata: { ...replacement.metadata, deletionTimestamp: '2026-01-01T00:00:30Z' } };
    for (let i = 0; i < 3; i++) await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.api.calls('DELETE /api/v1/namespaces/prod/pods'), ['DELETE /api/v1/namespaces/prod/pods/launcher-web-abc']);
    assert.deepEqual(h.events.map((e) => e.reason), ['HAReplacementDeleted']);
  });

  void it('a replacement stuck not running on another node is replaced on a third one, never on the failed node', async () => {
    const failed: Pod = { ...launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2025-12-31T23:50:00Z' }), status: { phase: 'Failed' } };
    const base = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2025-12-31T23:58:00Z', replaces: 'old-uid' });
    const stuck: Pod = { ...base, status: { phase: 'Pending' } };
    const h = harness([haVm('web', 0)], [failed, stuck], [nodeOf('n1', true), nodeOf('n2', true), nodeOf('n3', true)]);
    await h.c.reconcile(ctx, 'prod/web');
    assert.ok(h.api.calls('DELETE').includes('DELETE /api/v1/namespaces/prod/pods/launcher-web-abc'), 'the stuck replacement is deleted');
    const pod = podBody(h);
    assert.match(JSON.stringify(pod.spec.affinity), /"values":\["n3"\]/, 'placed on neither the failed node nor the stuck one');
    assert.notEqual(pod.metadata.name, 'launcher-web-abc');
    assert.equal(pod.metadata.labels['keyvirt.io/ha-replacement'], 'old-uid');
  });

  void it('a replacement stuck on the only other node: kept, nothing placed on the failed node', async () => {
    const failed: Pod = { ...launcherPod('web', 'launcher-web', 'old-uid', 'n1', { created: '2025-12-31T23:50:00Z' }), status: { phase: 'Failed' } };
    const base = launcherPod('web', 'launcher-web-abc', 'new-uid', 'n2', { created: '2025-12-31T23:58:00Z', replaces: 'old-uid' });
    const h = harness([haVm('web', 0)], [failed, { ...base, status: { phase: 'Pending' } }], [nodeOf('n1', true), nodeOf('n2', true)]);
    await h.c.reconcile(ctx, 'prod/web');
    assert.deepEqual(h.api.calls('DELETE'), []);
    assert.deepEqual(h.api.calls('POST /api/v1/namespaces/prod/pods'), []);
    assert.deepEqual(h.events.map((e) => e.reason), ['HADetectedFailure', 'HAReplacementUnschedulable']);
  });
});

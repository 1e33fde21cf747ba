// The controller's steps where an operator restart meets a migration half-way, with
// fakes for the API server and the launchers (the real ones: test/operator/migration.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { VirtualMachine, VirtualMachineMigration, type VirtualMachineMigrationStatus } from '@keyvirt/crds';
import { StartMigrationRequestSchema, type IncomingMigrationStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { keyOf } from '../runtime/resource.ts';
import type { JsonPatchOp } from '../runtime/status-patch.ts';
import { fitDecider } from '../vm/placement.ts';
import { migrationTargetPodName } from '../vm/names.ts';
import { MigrationController, type MigrationLauncherPort } from './migration-controller.ts';
import { MigrationStatusWriter } from './migration-status.ts';
import type { SourceFacts, TargetFacts } from './phases.ts';
import { clusterPolicySource } from './policy-source.ts';
import { podListUsage } from '../scheduler/node-usage-ledger.ts';

const log = pino({ level: 'silent' });
const ctx = { signal: new AbortController().signal, log, reconcileId: 'test' };
const MIG_UID = 'mig-uid-1';
const TARGET = migrationTargetPodName('web-1', MIG_UID);

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: { template: { memory: { size: '256Mi' }, allowEmulation: true } },
  status: { phase: 'Running', conditions: [{ type: 'LiveMigratable', status: 'True', reason: 'Migratable', message: 'ok', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
});

function migration(status: VirtualMachineMigrationStatus | undefined): VirtualMachineMigration {
  return VirtualMachineMigration.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineMigration',
    metadata: { name: 'move', namespace: 'prod', uid: MIG_UID, finalizers: ['keyvirt.io/migration-cleanup'], creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { vmName: 'web-1' },
    ...(status === undefined ? {} : { status }),
  });
}

function pod(name: string, phase: string, target: boolean): Pod {
  return {
    metadata: {
      name,
      namespace: 'prod',
      uid: `${name}-uid`,
      creationTimestamp: '2026-01-01T00:00:00Z',
      labels: { 'keyvirt.io/vm': 'web-1', 'keyvirt.io/vm-uid': 'vm-uid', ...(target ? { 'keyvirt.io/migration-target': MIG_UID } : {}) },
      ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'web-1', uid: 'vm-uid', controller: true }],
    },
    spec: { nodeName: target ? 'node-b' : 'node-a', containers: [{ name: 'launcher' }] },
    status: { phase, podIP: target ? '10.0.0.2' : '10.0.0.1' },
  };
}

interface World {
  m: VirtualMachineMigration;
  /** More migrations and VMs in the caches, beside `m` and `vm`. */
  others?: { ms: VirtualMachineMigration[]; vms: VirtualMachine[] };
  /** Holds every status write until released (workers reconciling at once). */
  writesHeld?: Promise<void>;
  pods: Pod[];
  source: SourceFacts;
  target: TargetFacts;
  incoming?: IncomingMigrationStatus;
  vm?: VirtualMachine;
}

function harness(w: World): { c: MigrationController; calls: string[]; statuses: VirtualMachineMigrationStatus[]; written: string[] } {
  const calls: string[] = [];
  const statuses: VirtualMachineMigrationStatus[] = [];
  /** The migration of each status write, by name. */
  const written: string[] = [];
  const launchers: MigrationLauncherPort = {
    baseUrl: () => Promise.resolve('http://10.0.0.2:8443'),
    cancelSource: () => Promise.resolve(void calls.push('cancelSource')).then(() => true),
    follow: () => undefined,
    forget: () => undefined,
    incoming: () => Promise.resolve(w.incoming),
    latestProgress: () => undefined,
    launcherStatus: () => Promise.reject(new Error('not used')),
    prepareIncoming: () => Promise.reject(new Error('not used')),
    sourceFacts: () => Promise.resolve(w.source),
    startSource: () => Promise.resolve(void calls.push('startSource')).then(() => {
      throw new Error('must not start');
    }),
    targetFacts: () => Promise.resolve(w.target),
  };
  const byKey = new Map(w.pods.map((p) => [keyOf(p.metadata), p]));
  const client = {
    patch: (path: string, body: unknown): Promise<unknown> => {
      const ops = body as { value: VirtualMachineMigrationStatus }[];
      if (path.endsWith('/status')) {
        statuses.push(ops[0]?.value ?? {});
        written.push(path.split('/').at(-2) ?? '');
      }
      return (w.writesHeld ?? Promise.resolve()).then(() => ({}));
    },
  };
  const c = new MigrationController({
    caches: {
      migration: (k) => [w.m, ...(w.others?.ms ?? [])].find((o) => keyOf(o.metadata) === k) ?? w.m,
      migrations: () => [w.m, ...(w.others?.ms ?? [])],
      vm: (k) => w.others?.vms.find((o) => keyOf(o.metadata) === k) ?? w.vm ?? vm,
      pod: (k) => byKey.get(k),
      podsOfVm: (of) => w.pods.filter((p) => p.metadata.labels?.['keyvirt.io/vm'] === of.metadata.name),
      nodes: () => [],
      nodeUsage: () => podListUsage(w.pods),
      policies: () => [],
      namespaceLabels: () => ({}),
    },
    launchers,
    objects: {
      createLauncher: () => Promise.resolve(void calls.push('createLauncher')).then(() => true),
      deletePod: (ref) => Promise.resolve(void calls.push(`deletePod ${ref.name}`)),
      deleteTargetSecret: (ref) => Promise.resolve(void calls.push(`deleteSecret ${ref.name}`)),
    },
    writer: {
      patchMigration: () => Promise.resolve(void calls.push('patchMigration')),
      promote: (p) => Promise.resolve(void calls.push(`promote ${p.metadata.name}`)),
    },
    statusWriter: new MigrationStatusWriter(client, { record: () => Promise.resolve() }),
    placement: fitDecider,
    disks: { storageDomain: () => undefined, claim: () => Promise.resolve(undefined) },
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
    policies: clusterPolicySource,
    clock: new ManualClock(Date.parse('2026-01-01T00:01:00Z')),
  });
  return { c, calls, statuses, written };
}

const base: VirtualMachineMigrationStatus = { sourcePod: 'launcher-web-1', sourceNode: 'node-a', targetPod: TARGET, targetNode: 'node-b', phaseTransitionTime: '2026-01-01T00:00:30Z' };

void describe('MigrationController after an operator restart', () => {
  void it('TargetReady: the target listens with credentials nobody holds any more → Failed CredentialsLost, the target goes, the source is never asked', async () => {
    const { c, calls, statuses } = harness({
      m: migration({ ...base, phase: 'TargetReady' }),
      pods: [pod('launcher-web-1', 'Running', false), pod(TARGET, 'Running', true)],
      source: { kind: 'none' },
      target: { kind: 'incoming', phase: 'Listening' },
      incoming: { phase: 'Listening', host: '10.0.0.2', port: 49152, postCopy: false, resumedAtMicros: null },
    });
    await c.reconcile(ctx, 'prod/move');
    assert.equal(statuses.at(-1)?.phase, 'Failed');
    assert.match(statuses.at(-1)?.failureReason ?? '', /^CredentialsLost: /);
    assert.ok(calls.includes(`deletePod ${TARGET}`), calls.join(', '));
    assert.ok(!calls.includes('startSource') && !calls.some((x) => x.startsWith('promote')));
    assert.ok(!calls.includes('deletePod launcher-web-1'), 'the source runs on');
  });

  void it('Running: the source exited after the hand-over and the target received the VM → promoted, Succeeded, the source pod removed', async () => {
    const { c, calls, statuses } = harness({
      m: migration({ ...base, phase: 'Running', startTime: '2026-01-01T00:00:40Z' }),
      pods: [pod('launcher-web-1', 'Succeeded', false), pod(TARGET, 'Running', true)],
      source: { kind: 'unreachable' },
      target: { kind: 'incoming', phase: 'Succeeded' },
    });
    await c.reconcile(ctx, 'prod/move');
    assert.equal(statuses.at(-1)?.phase, 'Succeeded');
    const promoted = calls.indexOf(`promote ${TARGET}`);
    assert.ok(promoted >= 0, calls.join(', '));
    assert.ok(calls.indexOf('deletePod launcher-web-1') > promoted, 'the source goes after the promotion');
    assert.ok(!calls.includes(`deletePod ${TARGET}`));
  });

  void it('Running: the source still copies and the target still receives → nothing but waiting', async () => {
    const { c, calls, statuses } = harness({
      m: migration({ ...base, phase: 'Running' }),
      pods: [pod('launcher-web-1', 'Running', false), pod(TARGET, 'Running', true)],
      source: { kind: 'unreachable' },
      target: { kind: 'incoming', phase: 'Receiving' },
    });
    assert.deepEqual(await c.reconcile(ctx, 'prod/move'), { requeueAfterMs: 1000 });
    assert.deepEqual(calls, []);
    assert.deepEqual(statuses, []);
  });

  void it('Pending: a VM that cannot live-migrate fails at once and nothing is created', async () => {
    const pinned = VirtualMachine.parse({
      ...vm,
      status: { phase: 'Running', conditions: [{ type: 'LiveMigratable', status: 'False', reason: 'DisksNotLiveMigratable', message: 'disk data is not ReadWriteMany', lastTransitionTime: '2026-01-01T00:00:00Z' }] },
    });
    const h = harness({ m: migration(undefined), pods: [pod('launcher-web-1', 'Running', false)], source: { kind: 'none' }, target: { kind: 'none' }, vm: pinned });
    await h.c.reconcile(ctx, 'prod/move');
    assert.equal(h.statuses.at(-1)?.phase, 'Failed');
    assert.equal(h.statuses.at(-1)?.failureReason, 'NotLiveMigratable: disk data is not ReadWriteMany');
    assert.ok(!h.calls.includes('createLauncher'));
  });

  void it('Pending: an earlier migration of the VM just succeeded and its source pod still ends → waits for the hand-over, nothing fails', async () => {
    const promoted = pod('launcher-web-1-promoted', 'Running', false);
    const h = harness({
      m: migration(undefined),
      pods: [pod('launcher-web-1', 'Running', false), { ...promoted, metadata: { ...promoted.metadata, creationTimestamp: '2026-01-01T00:00:30Z' } }],
      source: { kind: 'none' },
      target: { kind: 'none' },
    });
    assert.deepEqual(await h.c.reconcile(ctx, 'prod/move'), { requeueAfterMs: 2000 });
    assert.equal(h.statuses.at(-1)?.phase, 'Pending');
    assert.equal(h.statuses.at(-1)?.conditions?.[0]?.reason, 'LauncherHandOver');
    assert.deepEqual(h.calls, []);
  });

  void it('Pending: three migrations leaving one node, reconciled at once by three workers → two admitted (parallelOutboundMigrationsPerNode 2), the third waits', async () => {
    const named = (n: number): { v: VirtualMachine; m: VirtualMachineMigration; p: Pod } => {
      const name = `web-${String(n)}`;
      const v = VirtualMachine.parse({ ...vm, metadata: { ...vm.metadata, name, uid: `vm-uid-${String(n)}` } });
      const m = VirtualMachineMigration.parse({ ...migration(undefined), metadata: { ...migration(undefined).metadata, name: `move-${String(n)}`, uid: `mig-${String(n)}` }, spec: { vmName: name } });
      const p = pod(`launcher-${name}`, 'Running', false);
      return { v, m, p: { ...p, metadata: { ...p.metadata, labels: { 'keyvirt.io/vm': name, 'keyvirt.io/vm-uid': `vm-uid-${String(n)}` }, ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name, uid: `vm-uid-${String(n)}`, controller: true }] } } };
    };
    const [a, b, c3] = [named(1), named(2), named(3)];
    let release = (): void => undefined;
    const writesHeld = new Promise<void>((resolve) => {
      release = resolve;
    });
    const world: World = { m: a.m, others: { ms: [b.m, c3.m], vms: [a.v, b.v, c3.v] }, pods: [a.p, b.p, c3.p], source: { kind: 'none' }, target: { kind: 'none' }, writesHeld };
    const h = harness(world);
    // Every status write waits while the other workers reconcile: the cache shows all three Pending throughout.
    const done = Promise.all(['prod/move-1', 'prod/move-2', 'prod/move-3'].map((key) => h.c.reconcile(ctx, key)));
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await done;
    const scheduled = h.written.filter((_, i) => h.statuses[i]?.phase === 'Scheduling');
    assert.deepEqual(scheduled, ['move-1', 'move-2'], JSON.stringify(h.statuses.map((st, i) => [h.written[i], st.phase, st.conditions?.at(-1)?.reason])));
    const waiting = h.statuses[h.written.indexOf('move-3')];
    assert.equal(waiting?.phase ?? 'Pending', 'Pending');
    assert.match(JSON.stringify(waiting), /parallelOutboundMigrationsPerNode=2/);
    assert.equal(h.c.inMemory().admissions, 2, 'the two admissions count until the cache shows them');
    // The cache catches up: each admitted migration, reconciled past Pending, lets its admission go.
    const shown = (m: VirtualMachineMigration, i: number): VirtualMachineMigration => VirtualMachineMigration.parse({ ...m, status: h.statuses[i] });
    world.m = shown(a.m, h.written.indexOf('move-1'));
    world.others = { ms: [shown(b.m, h.written.indexOf('move-2')), c3.m], vms: [a.v, b.v, c3.v] };
    for (const key of ['prod/move-1', 'prod/move-2']) await h.c.reconcile(ctx, key);
    assert.equal(h.c.inMemory().admissions, 0);
  });
});

/**
 * Many migrations of one VM, one after the other, through a fake API server with
 * resourceVersions and a cache that catches up only when told. Three endings: a success
 * the cache catches up with; a migration deleted outright while the source had not
 * started (credentials minted, never handed over); one that fails and is deleted before
 * the cache shows its final status.
 */
void describe('MigrationController memory across many migrations', () => {
  const N = 12;
  const STATUS_PATH = /\/namespaces\/prod\/virtualmachinemigrations\/([^/]+)\/status$/;

  interface Stored {
    uid: string;
    rv: number;
    status: VirtualMachineMigrationStatus | undefined;
  }

  void it('per-migration state (statuses, credentials, source streams) is released when a migration ends or is gone', async () => {
    const api = new Map<string, Stored>();
    const cache = new Map<string, VirtualMachineMigration>();
    const pods = new Map<string, Pod>([['prod/launcher-web-1', pod('launcher-web-1', 'Running', false)]]);
    const incoming = new Map<string, IncomingMigrationStatus>();
    const source = new Map<string, SourceFacts>();
    const startFails = new Set<string>();
    const streams = new Set<string>();
    const calls: string[] = [];
    const catchUp = (name: string): void => {
      const o = api.get(name);
      if (o === undefined) return;
      cache.set(
        `prod/${name}`,
        VirtualMachineMigration.parse({
          apiVersion: 'keyvirt.io/v1alpha1',
          kind: 'VirtualMachineMigration',
          metadata: { name, namespace: 'prod', uid: o.uid, resourceVersion: String(o.rv), finalizers: ['keyvirt.io/migration-cleanup'], creationTimestamp: '2026-01-01T00:00:00Z' },
          spec: { vmName: 'web-1' },
          ...(o.status === undefined ? {} : { status: o.status }),
        }),
      );
    };
    const client = {
      patch: (path: string, body: unknown): Promise<unknown> => {
        const name = STATUS_PATH.exec(path)?.[1] ?? '';
        const o = api.get(name);
        const ops = body as JsonPatchOp[];
        const wanted = ops.find((op) => op.path === '/metadata/resourceVersion')?.value;
        if (o === undefined) return Promise.reject(new KubeApiError(404, 'NotFound', 'gone', { method: 'PATCH', path }));
        if (wanted !== String(o.rv)) return Promise.reject(new KubeApiError(409, 'Conflict', 'modified', { method: 'PATCH', path }));
        o.status = ops.find((op) => op.path === '/status')?.value as VirtualMachineMigrationStatus;
        o.rv++;
        calls.push(`status ${name} ${o.status.phase ?? ''}`);
        return Promise.resolve({ metadata: { resourceVersion: String(o.rv) } });
      },
    };
    const launchers: MigrationLauncherPort = {
      baseUrl: () => Promise.resolve('http://10.0.0.2:8443'),
      cancelSource: () => Promise.resolve(true),
      follow: (key) => void streams.add(key),
      forget: (key) => {
        calls.push(`forget ${key}`);
        streams.delete(key);
      },
      incoming: (target) => Promise.resolve(incoming.get(target.metadata.name)),
      latestProgress: () => undefined,
      launcherStatus: () =>
        Promise.resolve({
          phase: 'WaitingForMigration',
          accelerator: 'tcg',
          qemu: {},
          guestAgent: { connected: false },
          guest: { interfaces: [] },
          disks: [],
          timestamps: { launcherStartedAt: '2026-01-01T00:00:00Z', phaseTransitionAt: '2026-01-01T00:00:00Z' },
        }),
      prepareIncoming: (target) => {
        const listening: IncomingMigrationStatus = { phase: 'Listening', host: '10.0.0.2', port: 49152, postCopy: false, resumedAtMicros: null };
        incoming.set(target.metadata.name, listening);
        return Promise.resolve(listening);
      },
      sourceFacts: (key) => Promise.resolve(source.get(key) ?? { kind: 'none' }),
      startSource: (_pod, request) => {
        const started = StartMigrationRequestSchema.parse(request);
        const id = started.migrationId ?? '';
        if (startFails.has(id)) return Promise.reject(new Error('connect ECONNRESET'));
        return Promise.resolve({ migrationId: id, target: started.target, policy: started.policy, progress: null, result: null });
      },
      targetFacts: () => Promise.resolve({ kind: 'incoming', phase: 'Receiving' }),
    };
    const c = new MigrationController({
      caches: {
        migration: (k) => cache.get(k),
        migrations: () => [...cache.values()],
        vm: () => vm,
        pod: (k) => pods.get(k),
        podsOfVm: () => [...pods.values()],
        nodes: () => [],
        nodeUsage: () => podListUsage([...pods.values()]),
        policies: () => [],
        namespaceLabels: () => ({}),
      },
      launchers,
      objects: {
        createLauncher: () => Promise.resolve(true),
        deletePod: (ref) => Promise.resolve(void calls.push(`deletePod ${ref.name}`)),
        deleteTargetSecret: () => Promise.resolve(),
      },
      writer: { patchMigration: () => Promise.resolve(), promote: () => Promise.resolve() },
      statusWriter: new MigrationStatusWriter(client, { record: () => Promise.resolve() }),
      placement: fitDecider,
      disks: { storageDomain: () => undefined, claim: () => Promise.resolve(undefined) },
      settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
      policies: clusterPolicySource,
      clock: new ManualClock(Date.parse('2026-01-01T00:01:00Z')),
    });
    const gone = (name: string): void => {
      api.delete(name);
      cache.delete(`prod/${name}`);
    };

    for (let i = 0; i < N; i++) {
      const name = `move-${i}`;
      const key = `prod/${name}`;
      const uid = `uid-${i}`;
      const target = migrationTargetPodName('web-1', uid);
      pods.set(`prod/${target}`, { ...pod(target, 'Running', true), metadata: { ...pod(target, 'Running', true).metadata, labels: { 'keyvirt.io/vm': 'web-1', 'keyvirt.io/migration-target': uid } } });
      api.set(name, { uid, rv: 1, status: { ...base, targetPod: target, phase: 'PreparingTarget' } });
      catchUp(name);
      const ending = i % 3;
      if (ending !== 0) startFails.add(uid);

      // The target listens with freshly minted credentials; the source is asked to start.
      if (ending === 0) {
        await c.reconcile(ctx, key);
        assert.equal(api.get(name)?.status?.phase, 'Running');
        assert.ok(streams.has(key), 'the source stream is followed');
        assert.deepEqual(c.inMemory(), { statuses: 1, credentials: 0, admissions: 0 }, 'the source holds the credentials now');
        catchUp(name);
        source.set(key, {
          kind: 'ended',
          result: { migrationId: uid, phase: 'Succeeded', totalTimeMs: 400, downtimeMs: 20, setupTimeMs: 2, guestPauseMs: 25, sourceStoppedAtMicros: null, targetResumedAtMicros: null, transferredBytes: 1, iterations: 2, postCopy: false, sourceRunning: false },
        });
        await c.reconcile(ctx, key);
        assert.equal(api.get(name)?.status?.phase, 'Succeeded');
        assert.equal(api.get(name)?.status?.downtimeMs, 20, 'the final status carries the end figures');
        assert.ok(calls.indexOf(`forget ${key}`) > calls.indexOf(`status ${name} Succeeded`), 'the stream is released after the final status is written');
        assert.equal(c.inMemory().statuses, 1, 'the final status is remembered until the cache shows it');
        catchUp(name);
        await c.reconcile(ctx, key);
      } else {
        await assert.rejects(c.reconcile(ctx, key), /ECONNRESET/);
        assert.equal(api.get(name)?.status?.phase, 'TargetReady');
        assert.deepEqual(c.inMemory(), { statuses: 1, credentials: 1, admissions: 0 });
        if (ending === 2) {
          // The target dies; the cache has not shown TargetReady yet: the end is written on top of the operator's own write.
          pods.set(`prod/${target}`, pod(target, 'Failed', true));
          await c.reconcile(ctx, key);
          assert.equal(api.get(name)?.status?.phase, 'Failed');
          assert.deepEqual(c.inMemory(), { statuses: 1, credentials: 0, admissions: 0 });
        }
        gone(name);
        await c.reconcile(ctx, key);
      }
      pods.delete(`prod/${target}`);
      assert.deepEqual(c.inMemory(), { statuses: 0, credentials: 0, admissions: 0 }, `after ${name}`);
      assert.equal(streams.size, 0, `after ${name}`);
    }
  });
});

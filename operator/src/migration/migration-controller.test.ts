// The controller's steps where an operator restart meets a migration half-way, with
// fakes for the API server and the launchers (the real ones: test/operator/migration.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { VirtualMachine, VirtualMachineMigration, type VirtualMachineMigrationStatus } from '@keyvirt/crds';
import type { IncomingMigrationStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import { ManualClock } from '../runtime/manual-clock.ts';
import { keyOf } from '../runtime/resource.ts';
import { fitDecider } from '../vm/placement.ts';
import { migrationTargetPodName } from '../vm/names.ts';
import { MigrationController, type MigrationLauncherPort } from './migration-controller.ts';
import { MigrationStatusWriter } from './migration-status.ts';
import type { SourceFacts, TargetFacts } from './phases.ts';
import { clusterPolicySource } from './policy-source.ts';

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
  pods: Pod[];
  source: SourceFacts;
  target: TargetFacts;
  incoming?: IncomingMigrationStatus;
  vm?: VirtualMachine;
}

function harness(w: World): { c: MigrationController; calls: string[]; statuses: VirtualMachineMigrationStatus[] } {
  const calls: string[] = [];
  const statuses: VirtualMachineMigrationStatus[] = [];
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
      if (path.endsWith('/status')) statuses.push(ops[0]?.value ?? {});
      return Promise.resolve({});
    },
  };
  const c = new MigrationController({
    caches: {
      migration: () => w.m,
      migrations: () => [w.m],
      vm: () => w.vm ?? vm,
      pod: (k) => byKey.get(k),
      podsOfVm: () => w.pods,
      nodes: () => [],
      pods: () => w.pods,
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
  return { c, calls, statuses };
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
});

// The controller's writes and events for an evacuation, with in-memory caches and an
// API fake that records them (the real thing: test/operator/drain.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, VirtualMachineMigration, type EvictionStrategy, type MigrationPhase } from '@keyvirt/crds';
import { pino } from 'pino';
import { z } from 'zod';
import { ownerReferenceSchema } from '../runtime/owner-mapping.ts';
import type { Node } from '../runtime/core-schemas.ts';
import type { EventTarget, RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { EvacuationController, evacuationMigration } from './evacuation-controller.ts';
import { evacuationMigrationName } from './names.ts';

const log = pino({ level: 'silent' });
const ctx = { signal: new AbortController().signal, log, reconcileId: 't' };
const NOW = Date.parse('2026-06-01T12:00:00Z');

function vm(name: string, eviction: EvictionStrategy = 'LiveMigrate', nodeName = 'node-a'): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', uid: `${name}-uid`, labels: { team: 'web' } },
    spec: { runStrategy: 'Always', evictionStrategy: eviction, template: { memory: { size: '256Mi' } } },
    status: { phase: 'Running', nodeName, launcherPod: `launcher-${name}` },
  });
}

interface World {
  node: Node;
  vms: VirtualMachine[];
  migrations: VirtualMachineMigration[];
  created: VirtualMachineMigration[];
  deleted: string[];
  events: { target: EventTarget; event: RecordedEvent }[];
  existing: Set<string>;
}

function world(unschedulable: boolean, vms: VirtualMachine[]): World {
  return { node: { metadata: { name: 'node-a', uid: 'n-uid' }, spec: { unschedulable } }, vms, migrations: [], created: [], deleted: [], events: [], existing: new Set() };
}

function controller(w: World): EvacuationController {
  return new EvacuationController({
    caches: {
      node: (n) => (n === w.node.metadata.name ? w.node : undefined),
      vm: (k) => w.vms.find((vm) => `${vm.metadata.namespace ?? ''}/${vm.metadata.name}` === k),
      vmsOnNode: (n) => w.vms.filter((vm) => vm.status?.nodeName === n),
      migrations: () => w.migrations,
    },
    client: {
      create: (path, body) => {
        const m = VirtualMachineMigration.parse(body);
        if (w.existing.has(m.metadata.name)) return Promise.reject(new KubeApiError(409, 'AlreadyExists', 'exists', { method: 'POST', path }));
        w.existing.add(m.metadata.name);
        w.created.push(m);
        return Promise.resolve(body);
      },
      delete: (path) => {
        w.deleted.push(path);
        return Promise.resolve({});
      },
    },
    events: { record: (target, event) => (w.events.push({ target, event }), Promise.resolve()) },
    now: () => NOW,
  });
}

function withPhase(m: VirtualMachineMigration, phase: MigrationPhase): VirtualMachineMigration {
  return { ...m, status: { phase, endTime: new Date(NOW - 60_000).toISOString() } };
}

void describe('EvacuationController', () => {
  void it('creates one migration per LiveMigrate VM, each with the VM\'s labels, the node and attempt, owned by the VM', async () => {
    const w = world(true, [vm('a'), vm('b'), vm('d', 'Shutdown'), vm('x', 'LiveMigrate', 'node-b')]);
    await controller(w).reconcile(ctx, 'node-a');
    assert.deepEqual(w.created.map((m) => m.metadata.name), [evacuationMigrationName('a', 'node-a', 1), evacuationMigrationName('b', 'node-a', 1)]);
    const a = w.created[0];
    assert.deepEqual(a?.metadata.labels, { team: 'web', 'keyvirt.io/evacuation': 'node-a', 'keyvirt.io/vm': 'a' });
    assert.deepEqual(a?.metadata.annotations, { 'keyvirt.io/evacuation-node': 'node-a', 'keyvirt.io/evacuation-attempt': '1' });
    const owners = z.array(ownerReferenceSchema).parse(a?.metadata.ownerReferences);
    assert.equal(owners[0]?.uid, 'a-uid');
    assert.notEqual(owners[0]?.controller, true);
    assert.deepEqual(a?.spec, { vmName: 'a' });
    assert.deepEqual(w.events.map((e) => `${e.target.kind}/${e.target.metadata.name} ${e.event.reason}`), [
      'VirtualMachine/a Evacuating',
      'VirtualMachine/b Evacuating',
      'Node/node-a PreparingForMaintenance',
    ]);
  });

  void it('meets AlreadyExists from a stale cache without a second migration or event', async () => {
    const w = world(true, [vm('a')]);
    const c = controller(w);
    await c.reconcile(ctx, 'node-a');
    await c.reconcile(ctx, 'node-a');
    assert.equal(w.created.length, 1);
    assert.equal(w.events.filter((e) => e.event.reason === 'Evacuating').length, 1);
    assert.equal(w.events.filter((e) => e.event.reason === 'PreparingForMaintenance').length, 1, 'events on transitions only');
  });

  void it('retries a failed attempt as a new migration with a Warning naming the failure', async () => {
    const w = world(true, [vm('a')]);
    const first = evacuationMigration(vm('a'), 'node-a', evacuationMigrationName('a', 'node-a', 1), 1);
    w.migrations = [{ ...withPhase(first, 'Failed'), status: { phase: 'Failed', failureReason: 'target pod died', endTime: new Date(NOW - 60_000).toISOString() } }];
    await controller(w).reconcile(ctx, 'node-a');
    assert.deepEqual(w.created.map((m) => m.metadata.name), [evacuationMigrationName('a', 'node-a', 2)]);
    const retried = w.events.find((e) => e.event.reason === 'EvacuationRetried');
    assert.equal(retried?.event.type, 'Warning');
    assert.match(retried?.event.note ?? '', /target pod died/);
  });

  void it('reports Maintenance once the VMs have left, and EvacuationStopped when uncordoned mid-way', async () => {
    const w = world(true, [vm('a')]);
    const c = controller(w);
    await c.reconcile(ctx, 'node-a');
    w.vms = [vm('a', 'LiveMigrate', 'node-b')];
    await c.reconcile(ctx, 'node-a');
    assert.deepEqual(w.events.filter((e) => e.target.kind === 'Node').map((e) => e.event.reason), ['PreparingForMaintenance', 'Maintenance']);

    const w2 = world(true, [vm('a')]);
    const c2 = controller(w2);
    await c2.reconcile(ctx, 'node-a');
    const pending = withPhase(evacuationMigration(vm('a'), 'node-a', evacuationMigrationName('a', 'node-a', 1), 1), 'Pending');
    w2.migrations = [{ ...pending, metadata: { ...pending.metadata, uid: 'm-uid' } }];
    w2.node = { ...w2.node, spec: { unschedulable: false } };
    await c2.reconcile(ctx, 'node-a');
    assert.deepEqual(w2.deleted, [`/apis/keyvirt.io/v1alpha1/namespaces/prod/virtualmachinemigrations/${evacuationMigrationName('a', 'node-a', 1)}`]);
    assert.deepEqual(w2.events.filter((e) => e.target.kind === 'Node').map((e) => e.event.reason), ['PreparingForMaintenance', 'EvacuationStopped']);
  });

  void it('warns on the node about a VM that cannot be live-migrated', async () => {
    const blocked = vm('a');
    blocked.status = { ...blocked.status, conditions: [{ type: 'LiveMigratable', status: 'False', reason: 'DisksNotShared', message: 'disk root is on local storage', lastTransitionTime: '2026-06-01T11:00:00Z' }] };
    const w = world(true, [blocked]);
    await controller(w).reconcile(ctx, 'node-a');
    assert.equal(w.created.length, 0);
    const warning = w.events.find((e) => e.event.reason === 'EvacuationBlocked');
    assert.equal(warning?.event.type, 'Warning');
    assert.match(warning?.event.note ?? '', /prod\/a: the VM cannot be live-migrated: disk root is on local storage/);
  });

  void it('says nothing about a cordoned node it never had VMs on', async () => {
    const w = world(true, [vm('x', 'LiveMigrate', 'node-b')]);
    await controller(w).reconcile(ctx, 'node-a');
    assert.deepEqual(w.events, []);
  });

  void it('reads only the VMs it concerns: none on a node not drained, the node\'s own on a drained one, those its evacuations name', async () => {
    const cases: { name: string; drained: boolean; migrations: VirtualMachineMigration[]; onNode: number; looked: string[] }[] = [
      { name: 'not drained, no evacuation', drained: false, migrations: [], onNode: 0, looked: [] },
      { name: 'not drained, an evacuation of VM a', drained: false, migrations: [withPhase(evacuationMigration(vm('a'), 'node-a', evacuationMigrationName('a', 'node-a', 1), 1), 'Succeeded')], onNode: 0, looked: ['prod/a'] },
      { name: 'drained', drained: true, migrations: [], onNode: 1, looked: [] },
    ];
    for (const c of cases) {
      const w = world(c.drained, Array.from({ length: 1000 }, (_, i) => vm(`vm-${i}`, 'LiveMigrate', i % 2 === 0 ? 'node-a' : 'node-b')));
      w.migrations = c.migrations;
      let onNode = 0;
      const looked: string[] = [];
      const counting = new EvacuationController({
        caches: {
          node: (n) => (n === w.node.metadata.name ? w.node : undefined),
          vm: (k) => (looked.push(k), w.vms.find((v) => `prod/${v.metadata.name}` === k)),
          vmsOnNode: (n) => (onNode++, w.vms.filter((v) => v.status?.nodeName === n)),
          migrations: () => w.migrations,
        },
        client: { create: () => Promise.resolve({}), delete: () => Promise.resolve({}) },
        events: { record: () => Promise.resolve() },
        now: () => NOW,
      });
      await counting.reconcile(ctx, 'node-a');
      assert.equal(onNode, c.onNode, c.name);
      assert.deepEqual(looked, c.looked, c.name);
    }
  });
});

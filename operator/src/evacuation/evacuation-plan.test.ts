import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, VirtualMachineMigration, type EvictionStrategy, type MigrationPhase, type VirtualMachinePhase } from '@keyvirt/crds';
import type { Node } from '../runtime/core-schemas.ts';
import { drainReason, planEvacuation, retryDelayMs, vmVerdict, KEPT_ATTEMPTS, type VmVerdict } from './evacuation-plan.ts';
import { evacuationLabelValue, evacuationMigrationName } from './names.ts';

const NODE = 'node-a';
const NOW = Date.parse('2026-06-01T12:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

interface VmOpts {
  node?: string;
  phase?: VirtualMachinePhase;
  eviction?: EvictionStrategy;
  migratable?: boolean;
  pod?: string;
  deleting?: boolean;
}

function vm(name: string, o: VmOpts = {}): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod', uid: `${name}-uid`, ...(o.deleting === true ? { deletionTimestamp: iso(NOW) } : {}) },
    spec: { runStrategy: 'Always', evictionStrategy: o.eviction ?? 'LiveMigrate', template: { memory: { size: '256Mi' } } },
    status: {
      phase: o.phase ?? 'Running',
      nodeName: o.node ?? NODE,
      launcherPod: o.pod ?? `launcher-${name}`,
      conditions: [
        { type: 'LiveMigratable', status: o.migratable === false ? 'False' : 'True', reason: o.migratable === false ? 'DisksNotShared' : 'Migratable', message: o.migratable === false ? 'disk root is on local storage' : '', lastTransitionTime: iso(NOW) },
      ],
    },
  });
}

interface MigrationOpts {
  attempt?: number;
  node?: string;
  phase?: MigrationPhase;
  endedAgoMs?: number;
  sourcePod?: string;
  failureReason?: string;
  deleting?: boolean;
}

function migration(vmName: string, o: MigrationOpts = {}): VirtualMachineMigration {
  const attempt = o.attempt ?? 1;
  const node = o.node ?? NODE;
  return VirtualMachineMigration.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineMigration',
    metadata: {
      name: evacuationMigrationName(vmName, node, attempt),
      namespace: 'prod',
      uid: `${vmName}-m${String(attempt)}`,
      creationTimestamp: iso(NOW - 600_000),
      labels: { 'keyvirt.io/evacuation': node },
      annotations: { 'keyvirt.io/evacuation-node': node, 'keyvirt.io/evacuation-attempt': String(attempt) },
      ...(o.deleting === true ? { deletionTimestamp: iso(NOW) } : {}),
    },
    spec: { vmName },
    status: {
      ...(o.phase === undefined ? {} : { phase: o.phase }),
      ...(o.endedAgoMs === undefined ? {} : { endTime: iso(NOW - o.endedAgoMs) }),
      ...(o.sourcePod === undefined ? {} : { sourcePod: o.sourcePod }),
      ...(o.failureReason === undefined ? {} : { failureReason: o.failureReason }),
    },
  });
}

function userMigration(vmName: string, phase?: MigrationPhase): VirtualMachineMigration {
  return VirtualMachineMigration.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineMigration',
    metadata: { name: `by-hand-${vmName}`, namespace: 'prod' },
    spec: { vmName },
    ...(phase === undefined ? {} : { status: { phase } }),
  });
}

function node(spec: Node['spec'] = {}): Node {
  return { metadata: { name: NODE, uid: 'node-uid' }, spec };
}

void describe('drainReason', () => {
  const table: [string, Node | undefined, string | undefined][] = [
    ['schedulable node', node(), undefined],
    ['cordoned node (kubectl drain / cordon)', node({ unschedulable: true }), 'cordoned'],
    ['keyvirt.io/drain taint, any effect', node({ taints: [{ key: 'keyvirt.io/drain', effect: 'PreferNoSchedule' }] }), 'drain-taint'],
    ['another taint', node({ taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }] }), undefined],
    ['deleted node', undefined, undefined],
  ];
  for (const [what, n, want] of table) {
    void it(`${what} → ${String(want)}`, () => assert.equal(drainReason(n), want));
  }
});

void describe('vmVerdict', () => {
  const table: [string, VirtualMachine, VirtualMachineMigration[], VmVerdict['kind']][] = [
    ['running LiveMigrate VM, no migration yet', vm('a'), [], 'migrate'],
    ['Shutdown VM (the eviction stops it)', vm('a', { eviction: 'Shutdown' }), [], 'shutdown'],
    ['paused VM migrates too', vm('a', { phase: 'Paused' }), [], 'migrate'],
    ['VM still starting', vm('a', { phase: 'Starting' }), [], 'waiting'],
    ['VM Migrating, its migration not in the cache yet', vm('a', { phase: 'Migrating' }), [], 'waiting'],
    ['not live-migratable', vm('a', { migratable: false }), [], 'blocked'],
    ['its evacuation migration waits for a slot', vm('a'), [migration('a', { phase: 'Pending' })], 'migrating'],
    ['its evacuation migration has no phase yet', vm('a'), [migration('a')], 'migrating'],
    ['a migration made by hand is running', vm('a'), [userMigration('a', 'Running')], 'migrating'],
    ['a finished migration made by hand', vm('a'), [userMigration('a', 'Succeeded')], 'migrate'],
    ['another VM\'s migration', vm('a'), [migration('b', { phase: 'Running' })], 'migrate'],
    ['attempt 1 failed 3 s ago (retry after 10 s)', vm('a'), [migration('a', { phase: 'Failed', endedAgoMs: 3_000 })], 'backoff'],
    ['attempt 1 failed 11 s ago', vm('a'), [migration('a', { phase: 'Failed', endedAgoMs: 11_000 })], 'migrate'],
    ['two failures in a row, the second 15 s ago (retry after 20 s)', vm('a'), [migration('a', { phase: 'Failed', endedAgoMs: 60_000 }), migration('a', { attempt: 2, phase: 'Failed', endedAgoMs: 15_000 })], 'backoff'],
    ['succeeded, VM status still names the source pod', vm('a'), [migration('a', { phase: 'Succeeded', endedAgoMs: 1_000, sourcePod: 'launcher-a' })], 'settling'],
    ['succeeded long ago, the VM came back later in another pod', vm('a', { pod: 'launcher-a-0123456789' }), [migration('a', { phase: 'Succeeded', endedAgoMs: 3_600_000, sourcePod: 'launcher-a' })], 'migrate'],
    ['an evacuation of another node failed just now', vm('a'), [migration('a', { node: 'node-b', phase: 'Failed', endedAgoMs: 1_000 })], 'migrate'],
  ];
  for (const [what, v, ms, want] of table) {
    void it(`${what} → ${want}`, () => assert.equal(vmVerdict(v, NODE, ms, NOW).kind, want));
  }

  void it('numbers attempts and names them deterministically by VM, node and attempt', () => {
    const first = vmVerdict(vm('a'), NODE, [], NOW);
    assert.deepEqual(first, { kind: 'migrate', name: evacuationMigrationName('a', NODE, 1), attempt: 1, previousFailure: undefined });
    assert.match(first.kind === 'migrate' ? first.name : '', /^evacuate-a-[0-9a-f]{8}-1$/);
    const retry = vmVerdict(vm('a'), NODE, [migration('a', { phase: 'Failed', endedAgoMs: 60_000, failureReason: 'target pod died' })], NOW);
    assert.deepEqual(retry, { kind: 'migrate', name: evacuationMigrationName('a', NODE, 2), attempt: 2, previousFailure: 'target pod died' });
    assert.notEqual(evacuationMigrationName('a', 'node-a', 1), evacuationMigrationName('a', 'node-b', 1));
  });

  void it('backs off 10 s doubling to 5 min', () => {
    assert.deepEqual([0, 1, 2, 3, 6, 20].map(retryDelayMs), [0, 10_000, 20_000, 40_000, 300_000, 300_000]);
    const v = vmVerdict(vm('a'), NODE, [migration('a', { phase: 'Failed', endedAgoMs: 60_000 }), migration('a', { attempt: 2, phase: 'Cancelled', endedAgoMs: 15_000 })], NOW);
    assert.deepEqual(v, { kind: 'backoff', failures: 2, retryAt: NOW + 5_000, lastFailure: 'Cancelled' });
  });
});

void describe('planEvacuation', () => {
  void it('a cordoned node with three LiveMigrate VMs and a Shutdown VM: three migrations, PreparingForMaintenance', () => {
    const vms = [vm('a'), vm('b'), vm('c'), vm('d', { eviction: 'Shutdown' }), vm('elsewhere', { node: 'node-b' })];
    const plan = planEvacuation({ nodeName: NODE, node: node({ unschedulable: true }), vms, migrations: [], now: NOW });
    assert.equal(plan.phase, 'PreparingForMaintenance');
    assert.equal(plan.reason, 'cordoned');
    assert.deepEqual(plan.vms.map((v) => `${v.vm.metadata.name}:${v.verdict.kind}`), ['a:migrate', 'b:migrate', 'c:migrate', 'd:shutdown']);
    assert.equal(plan.requeueAfterMs, undefined);
  });

  void it('Maintenance once only Shutdown VMs (or none) are left', () => {
    const plan = planEvacuation({ nodeName: NODE, node: node({ unschedulable: true }), vms: [vm('d', { eviction: 'Shutdown' }), vm('a', { node: 'node-b' })], migrations: [], now: NOW });
    assert.equal(plan.phase, 'Maintenance');
  });

  void it('a VM being deleted is not moved', () => {
    const plan = planEvacuation({ nodeName: NODE, node: node({ unschedulable: true }), vms: [vm('a', { deleting: true })], migrations: [], now: NOW });
    assert.deepEqual(plan.vms, []);
  });

  void it('polls for a backoff and for a succeeded migration the VM status does not show yet', () => {
    const plan = planEvacuation({
      nodeName: NODE,
      node: node({ unschedulable: true }),
      vms: [vm('a'), vm('b')],
      migrations: [migration('a', { phase: 'Failed', endedAgoMs: 3_000 }), migration('b', { phase: 'Succeeded', endedAgoMs: 100, sourcePod: 'launcher-b' })],
      now: NOW,
    });
    assert.equal(plan.requeueAfterMs, 2_000);
    const backoffOnly = planEvacuation({ nodeName: NODE, node: node({ unschedulable: true }), vms: [vm('a')], migrations: [migration('a', { phase: 'Failed', endedAgoMs: 3_000 })], now: NOW });
    assert.equal(backoffOnly.requeueAfterMs, 7_100);
  });

  void it('uncordoned: nothing comes back; Pending evacuations are called off, running ones finish', () => {
    const migrations = [
      migration('a', { phase: 'Pending' }),
      migration('b'),
      migration('c', { phase: 'Running' }),
      migration('d', { phase: 'Pending', deleting: true }),
      migration('e', { phase: 'Pending', node: 'node-b' }),
      userMigration('f', 'Pending'),
    ];
    const plan = planEvacuation({ nodeName: NODE, node: node(), vms: [vm('a'), vm('b'), vm('c'), vm('d'), vm('e'), vm('f')], migrations, now: NOW });
    assert.equal(plan.phase, 'None');
    assert.deepEqual(plan.vms, []);
    assert.deepEqual(plan.cancel.map((m) => m.spec.vmName), ['a', 'b']);
    const otherOperator = planEvacuation({ nodeName: NODE, node: node(), vms: [vm('c')], migrations, now: NOW });
    assert.deepEqual(otherOperator.cancel, [], 'migrations of VMs another operator manages are left alone');
  });

  void it(`keeps the newest ${String(KEPT_ATTEMPTS)} finished attempts per VM and node`, () => {
    const migrations = [1, 2, 3, 4, 5].map((attempt) => migration('a', { attempt, phase: 'Failed', endedAgoMs: 600_000 }));
    const plan = planEvacuation({ nodeName: NODE, node: node({ unschedulable: true }), vms: [vm('a')], migrations: [...migrations, migration('b', { phase: 'Failed', endedAgoMs: 1 })], now: NOW });
    assert.deepEqual(plan.prune.map((m) => m.metadata.name).sort(), [evacuationMigrationName('a', NODE, 1), evacuationMigrationName('a', NODE, 2)].sort());
    const a = plan.vms[0]?.verdict;
    assert.equal(a?.kind === 'migrate' ? a.attempt : 0, 6);
  });

  void it('labels a long node name by hash (label values stop at 63 characters)', () => {
    assert.equal(evacuationLabelValue('node-a'), 'node-a');
    const long = `${'n'.repeat(70)}.example.internal`;
    assert.match(evacuationLabelValue(long), /^node-[0-9a-f]{16}$/);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { podSchema, type Pod } from '../runtime/core-schemas.ts';
import { ANNOTATION_MEMORY_OVERHEAD, LABEL_VM } from './names.ts';
import { VmMetricsTally } from './vm-metrics-tally.ts';

function vm(name: string, phase?: string): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: 'prod' },
    spec: { runStrategy: 'Always', template: { memory: { size: '1Gi' } } },
    ...(phase === undefined ? {} : { status: { phase } }),
  });
}

function pod(name: string, vmName: string, phase: string, overhead?: string): Pod {
  return podSchema.parse({
    metadata: { name, namespace: 'prod', labels: { [LABEL_VM]: vmName }, annotations: overhead === undefined ? {} : { [ANNOTATION_MEMORY_OVERHEAD]: overhead } },
    spec: { containers: [{ name: 'launcher' }] },
    status: { phase },
  });
}

void describe('VmMetricsTally', () => {
  void it('counts VMs per phase as they are added, change phase and go', () => {
    const t = new VmMetricsTally();
    t.vmHandlers.onAdd?.(vm('a', 'Running'));
    t.vmHandlers.onAdd?.(vm('b', 'Running'));
    t.vmHandlers.onAdd?.(vm('c'));
    assert.deepEqual([...t.phaseCounts()].sort(), [['Running', 2], ['Unknown', 1]]);
    t.vmHandlers.onUpdate?.(vm('a', 'Running'), vm('a', 'Migrating'));
    t.vmHandlers.onUpdate?.(vm('b', 'Running'), vm('b', 'Running'));
    t.vmHandlers.onDelete?.(vm('c'));
    assert.deepEqual([...t.phaseCounts()].sort(), [['Migrating', 1], ['Running', 1]], 'a phase no VM is in is gone, not 0');
    t.vmHandlers.onDelete?.(vm('a', 'Migrating'));
    t.vmHandlers.onDelete?.(vm('a', 'Migrating'));
    assert.deepEqual([...t.phaseCounts()], [['Running', 1]], 'a second delete of one VM counts once');
  });

  void it('keeps each VM the overhead of its running launchers, through a migration, and moves its revision only on a change', () => {
    const t = new VmMetricsTally();
    t.podHandlers.onAdd?.(pod('src', 'web', 'Running', '100'));
    t.podHandlers.onAdd?.(pod('pending', 'db', 'Pending', '50'));
    assert.deepEqual([...t.launcherOverheads()], [['prod/web', 100]], 'a launcher not yet running requests nothing yet');
    const r = t.overheadRevision();
    t.podHandlers.onUpdate?.(pod('src', 'web', 'Running', '100'), pod('src', 'web', 'Running', '100'));
    assert.equal(t.overheadRevision(), r, 'nothing changed');
    t.podHandlers.onAdd?.(pod('dst', 'web', 'Running', '120'));
    assert.deepEqual([...t.launcherOverheads()], [['prod/web', 120]], 'while both run, the larger');
    assert.notEqual(t.overheadRevision(), r);
    t.podHandlers.onUpdate?.(pod('dst', 'web', 'Running', '120'), pod('dst', 'web', 'Succeeded', '120'));
    assert.deepEqual([...t.launcherOverheads()], [['prod/web', 100]], 'the source again once the target is gone');
    t.podHandlers.onDelete?.(pod('src', 'web', 'Running', '100'));
    assert.deepEqual([...t.launcherOverheads()], []);
  });

  void it('ignores an overhead annotation that is no number (any pod writer may set it)', () => {
    const t = new VmMetricsTally();
    t.podHandlers.onAdd?.(pod('x', 'web', 'Running', 'lots'));
    t.podHandlers.onAdd?.(pod('y', 'db', 'Running', '7e3'));
    assert.deepEqual([...t.launcherOverheads()], [['prod/db', 7000]]);
  });
});

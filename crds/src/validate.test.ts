import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPath, validateObject, validateStorageDomain, validateVirtualMachine } from './validate.ts';

const minimalVm = {
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'vm-1', namespace: 'default' },
  spec: { template: { memory: { size: '256Mi' } } },
};

void test('formats zod paths as field paths', () => {
  assert.equal(formatPath(['spec', 'template', 'disks', 1, 'name']), 'spec.template.disks[1].name');
  assert.equal(formatPath([]), '');
});

void test('a minimal VM gets the documented defaults', () => {
  const result = validateVirtualMachine(minimalVm);
  assert.ok(result.ok);
  const { spec } = result.value;
  assert.equal(spec.runStrategy, 'Halted');
  assert.equal(spec.evictionStrategy, 'LiveMigrate');
  assert.deepEqual(spec.highAvailability, { enabled: false, priority: 0 });
  assert.deepEqual(spec.template.cpu, { model: 'host-model', sockets: 1, cores: 1, threads: 1, dedicatedCpuPlacement: false });
  assert.deepEqual(spec.template.machine, { type: 'q35' });
  assert.equal(spec.template.guestAgent, true);
  assert.equal(spec.template.allowEmulation, false);
  assert.equal(spec.terminationGracePeriodSeconds, 180);
  assert.deepEqual(spec.template.disks, []);
});

void test('validateObject dispatches on kind and rejects foreign objects', () => {
  assert.deepEqual(validateObject({ apiVersion: 'v1', kind: 'Pod' }), { ok: false, issues: [{ path: 'apiVersion', message: 'apiVersion must be keyvirt.io/v1alpha1' }] });
  assert.deepEqual(validateObject({ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachineInstance' }), {
    ok: false,
    issues: [{ path: 'kind', message: 'kind must be one of: VirtualMachine, VirtualMachineMigration, StorageDomain, MigrationPolicy, VirtualMachineImage' }],
  });
  assert.deepEqual(validateObject(null), { ok: false, issues: [{ path: '', message: 'the object must be a mapping' }] });
  assert.ok(validateObject(minimalVm).ok);
});

void test('reports every problem of an object, each with its own path', () => {
  const result = validateStorageDomain({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name: 'sd' },
    spec: { type: 'iscsi', nfs: { server: 'nfs', path: '/x' } },
  });
  assert.ok(!result.ok);
  assert.deepEqual(result.issues, [
    { path: 'spec.nfs', message: 'spec.nfs is only allowed when type is nfs' },
    { path: 'spec.iscsi', message: 'type iscsi needs spec.iscsi with portal, iqn and lun' },
  ]);
});

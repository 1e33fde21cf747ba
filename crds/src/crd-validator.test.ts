import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyDefaults, crdViolations } from './crd-validator.ts';
import { committedSchema } from './manifest-files.ts';
import type { JsonSchema } from './structural-schema.ts';

const listSchema = (rule: string, message: string): JsonSchema => ({
  type: 'object',
  properties: {
    sizes: { type: 'array', items: { type: 'string' }, 'x-kubernetes-validations': [{ rule, message }] },
  },
});

void test('CEL rules see Kubernetes quantities and list helpers', () => {
  const atLeast = listSchema("self.all(s, quantity(s).compareTo(quantity('1Gi')) >= 0)", 'too small');
  assert.deepEqual(crdViolations(atLeast, { sizes: ['1Gi', '2048Mi'] }), []);
  assert.deepEqual(crdViolations(atLeast, { sizes: ['1Gi', '1000Mi'] }), [{ path: 'sizes', message: 'too small', rule: "self.all(s, quantity(s).compareTo(quantity('1Gi')) >= 0)" }]);
  const sorted = listSchema('self.isSorted()', 'unsorted');
  assert.equal(crdViolations(sorted, { sizes: ['a', 'b'] }).length, 0);
  assert.equal(crdViolations(sorted, { sizes: ['b', 'a'] }).length, 1);
});

void test('defaults are applied before the rules run', () => {
  const schema = committedSchema('VirtualMachine');
  const defaulted = applyDefaults(schema, { spec: { template: { memory: { size: '1Gi' } } } }) as { spec: Record<string, unknown> };
  assert.equal(defaulted.spec.runStrategy, 'Halted');
  assert.deepEqual(defaulted.spec.highAvailability, { enabled: false, priority: 0 });
});

void test('a type error blocks the CEL rules, as in kube-apiserver', () => {
  const schema = committedSchema('VirtualMachine');
  const violations = crdViolations(schema, {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'x' },
    spec: { template: { cpu: { threads: 'two' }, memory: { size: '1Gi' } } },
  });
  assert.deepEqual(
    violations.map((v) => v.path),
    ['spec.template.cpu.threads', ''],
  );
});

void test('without its CEL rule, a cross-field defect gets through the schema', () => {
  const schema = committedSchema('VirtualMachine');
  const vm = {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'x' },
    spec: { runStrategy: 'Halted', highAvailability: { enabled: true }, template: { memory: { size: '1Gi' } } },
  };
  assert.deepEqual(
    crdViolations(schema, vm).map((v) => v.message),
    ['highAvailability needs runStrategy Always or RerunOnFailure'],
  );
  const spec = (schema.properties as Record<string, JsonSchema>).spec ?? {};
  const withoutRules: JsonSchema = { ...schema, properties: { ...(schema.properties as object), spec: { ...spec, 'x-kubernetes-validations': [] } } };
  assert.deepEqual(crdViolations(withoutRules, vm), []);
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderManifests } from './crd-manifest.ts';
import { staleFiles } from './generate.ts';
import { KINDS, kindInfo } from './kinds.ts';
import { committedSchema, MANIFEST_DIR, readDocuments } from './manifest-files.ts';
import { structuralProblems, toStructural, type JsonSchema } from './structural-schema.ts';

interface Crd {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames: string[]; categories: string[] };
    versions: { name: string; served: boolean; storage: boolean; subresources: { status: object }; additionalPrinterColumns: { jsonPath: string }[] }[];
  };
}

void test('every generated schema is structural and documented for kubectl explain', () => {
  for (const kind of KINDS) {
    assert.deepEqual(structuralProblems(committedSchema(kind), '', true), [], kind);
  }
});

void test('the structural check catches what Kubernetes rejects', () => {
  const bad: JsonSchema = {
    type: 'object',
    properties: {
      untyped: { description: 'x' },
      ref: { $ref: '#/definitions/x', description: 'x' },
      union: { type: 'object', description: 'x', oneOf: [{ type: 'object', properties: { a: { type: 'string' } } }] },
      list: { type: 'array', description: 'x' },
      undocumented: { type: 'string' },
    },
  };
  const problems = structuralProblems(bad, '', true);
  assert.deepEqual(problems, [
    '.untyped: no type',
    '.ref: unsupported keyword $ref',
    '.ref: no type',
    '.union: unsupported keyword oneOf',
    '.list: array without items',
    '.undocumented: no description',
  ]);
});

void test('toStructural strips what zod adds and Kubernetes does not accept', () => {
  const out = toStructural({
    $schema: 'http://json-schema.org/draft-04/schema#',
    type: 'object',
    additionalProperties: false,
    properties: {
      n: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      t: { type: 'string', format: 'date-time', pattern: '^.*$' },
      any: { type: 'object', additionalProperties: {} },
    },
    required: [],
  });
  assert.deepEqual(out, {
    type: 'object',
    properties: {
      n: { type: 'integer', minimum: 0 },
      t: { type: 'string', format: 'date-time' },
      any: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
    },
  });
});

void test('each CRD has its names, scope, status subresource and printer columns', () => {
  const expected = {
    VirtualMachine: ['vm', 'Namespaced'],
    VirtualMachineMigration: ['vmm', 'Namespaced'],
    StorageDomain: ['sd', 'Cluster'],
    MigrationPolicy: ['mp', 'Cluster'],
    VirtualMachineImage: ['vmimage', 'Namespaced'],
  } as const;
  for (const kind of KINDS) {
    const info = kindInfo(kind);
    const [crd] = readDocuments(join(MANIFEST_DIR, `keyvirt.io_${info.plural}.yaml`)) as Crd[];
    assert.ok(crd !== undefined);
    assert.equal(crd.metadata.name, `${info.plural}.keyvirt.io`);
    assert.equal(crd.spec.group, 'keyvirt.io');
    assert.equal(crd.spec.names.kind, kind);
    assert.deepEqual(crd.spec.names.shortNames, [expected[kind][0]]);
    assert.equal(crd.spec.scope, expected[kind][1]);
    assert.deepEqual(crd.spec.names.categories, ['keyvirt']);
    const [version] = crd.spec.versions;
    assert.ok(version !== undefined);
    assert.equal(version.name, 'v1alpha1');
    assert.ok(version.served && version.storage);
    assert.deepEqual(version.subresources.status, {});
    for (const column of version.additionalPrinterColumns) assert.ok(jsonPathExists(committedSchema(kind), column.jsonPath), `${kind}: ${column.jsonPath}`);
  }
});

function jsonPathExists(schema: JsonSchema, jsonPath: string): boolean {
  if (jsonPath === '.metadata.creationTimestamp') return true;
  let node: JsonSchema | undefined = schema;
  for (const part of jsonPath.replace(/\[\d+\]/g, '[]').split('.').slice(1)) {
    const [name = '', list] = part.split('[');
    node = (node?.properties as Record<string, JsonSchema> | undefined)?.[name];
    if (list !== undefined) node = node?.items as JsonSchema | undefined;
  }
  return node !== undefined;
}

void test('the VirtualMachine printer columns show phase, node and IP', () => {
  const names = kindInfo('VirtualMachine').printerColumns.filter((c) => c.priority === undefined).map((c) => c.name);
  assert.deepEqual(names, ['Phase', 'Ready', 'Node', 'IP', 'Age']);
});

void test('--check reports missing, changed and stale manifests', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keyvirt-crds-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = renderManifests();
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  assert.deepEqual(staleFiles(files, [dir]), []);
  const [first = ''] = files.keys();
  writeFileSync(join(dir, first), 'changed\n');
  writeFileSync(join(dir, 'keyvirt.io_old.yaml'), 'stale\n');
  assert.deepEqual(staleFiles(files, [dir]).sort(), [join(dir, first), join(dir, 'keyvirt.io_old.yaml')].sort());
});

void test('the committed manifests are what the generator writes', () => {
  assert.deepEqual(staleFiles(renderManifests(), [MANIFEST_DIR]), []);
});

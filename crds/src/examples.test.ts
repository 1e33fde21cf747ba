import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { crdViolations } from './crd-validator.ts';
import { isKeyVirtKind } from './kinds.ts';
import { committedSchema, readDocuments, REPO_ROOT } from './manifest-files.ts';
import { validateObject } from './validate.ts';

const examplesDir = join(REPO_ROOT, 'examples');
const files = readdirSync(examplesDir).filter((f) => f.endsWith('.yaml'));

void test('the examples cover every kind', () => {
  const kinds = new Set(files.flatMap((f) => readDocuments(join(examplesDir, f)).map((d) => (d as { kind?: string }).kind)));
  assert.deepEqual([...kinds].sort(), ['MigrationPolicy', 'StorageDomain', 'VirtualMachine', 'VirtualMachineImage', 'VirtualMachineMigration']);
});

for (const file of files) {
  void test(`examples/${file} validates with zod and against the CRD schema`, () => {
    const docs = readDocuments(join(examplesDir, file));
    assert.ok(docs.length > 0);
    for (const doc of docs) {
      const result = validateObject(doc);
      assert.ok(result.ok, `zod rejected ${file}: ${JSON.stringify(result.ok ? [] : result.issues)}`);
      const kind = (doc as { kind: unknown }).kind;
      assert.ok(isKeyVirtKind(kind));
      assert.deepEqual(crdViolations(committedSchema(kind), doc), []);
    }
  });
}

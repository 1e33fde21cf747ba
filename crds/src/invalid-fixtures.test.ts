// Every object under test/fixtures/invalid must be rejected twice: by zod with the
// exact field path and message its header names, and by the generated CRD schema
// (structural keywords or a CEL rule) at that field or one of its parents, with the
// same message whenever a CEL rule carries it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { crdViolations } from './crd-validator.ts';
import { isKeyVirtKind, KINDS } from './kinds.ts';
import { committedSchema, readDocuments, REPO_ROOT } from './manifest-files.ts';
import type { JsonSchema } from './structural-schema.ts';
import { validateObject } from './validate.ts';

const fixturesDir = join(REPO_ROOT, 'test', 'fixtures', 'invalid');
const files = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml')).sort();

function header(text: string, key: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`# ${key}: `));
  assert.ok(line !== undefined, `missing "# ${key}:" header`);
  return line.slice(`# ${key}: `.length);
}

function celMessages(schema: unknown, into = new Set<string>()): Set<string> {
  if (typeof schema !== 'object' || schema === null) return into;
  const rules = (schema as Record<string, unknown>)['x-kubernetes-validations'];
  if (Array.isArray(rules)) for (const rule of rules as { message?: string }[]) if (rule.message !== undefined) into.add(rule.message);
  for (const [key, value] of Object.entries(schema)) if (key !== 'x-kubernetes-validations') celMessages(value, into);
  return into;
}

const schemas = new Map<string, JsonSchema>(KINDS.map((kind) => [kind, committedSchema(kind)]));
const allCelMessages = new Set([...schemas.values()].flatMap((s) => [...celMessages(s)]));

/** True when `parent` is `path` or one of its ancestors (spec.template.disks for spec.template.disks[1].name). */
function isSelfOrAncestor(parent: string, path: string): boolean {
  if (parent === '' || parent === path) return true;
  return path.startsWith(parent) && (path[parent.length] === '.' || path[parent.length] === '[');
}

void test('the invalid corpus has at least 40 objects', () => {
  assert.ok(files.length >= 40, `only ${files.length} fixtures`);
});

for (const file of files) {
  void test(`test/fixtures/invalid/${file} is rejected by zod and by the CRD`, () => {
    const text = readFileSync(join(fixturesDir, file), 'utf8');
    const path = header(text, 'expect-path');
    const message = header(text, 'expect-message');
    const [doc, ...rest] = readDocuments(join(fixturesDir, file));
    assert.equal(rest.length, 0, 'one object per fixture');

    const result = validateObject(doc);
    assert.equal(result.ok, false, 'zod accepted the object');
    if (result.ok) return;
    assert.deepEqual(result.issues, [{ path, message }], 'zod reports exactly the expected issue');

    const kind = (doc as { kind?: unknown }).kind;
    assert.ok(isKeyVirtKind(kind));
    const violations = crdViolations(schemas.get(kind) ?? {}, doc);
    assert.ok(violations.length > 0, 'the CRD schema accepts the object');
    assert.deepEqual(violations.filter((v) => v.message.startsWith('rule evaluation error')), []);
    const atField = violations.filter((v) => isSelfOrAncestor(v.path, path));
    assert.ok(atField.length > 0, `no CRD violation at ${path}: ${JSON.stringify(violations)}`);
    if (allCelMessages.has(message)) {
      assert.ok(
        atField.some((v) => v.rule !== undefined && v.message === message),
        `the CEL twin of "${message}" did not fire: ${JSON.stringify(violations)}`,
      );
    }
  });
}

void test('every CEL rule (except update-only rules) is exercised by a fixture', () => {
  const expected = new Set(files.map((file) => header(readFileSync(join(fixturesDir, file), 'utf8'), 'expect-message')));
  const transitionOnly = new Set(['type cannot be changed', 'a migration cannot be changed; delete it to cancel it', 'an image cannot be changed; create another one']);
  const uncovered = [...allCelMessages].filter((m) => !expected.has(m) && !transitionOnly.has(m));
  assert.deepEqual(uncovered, []);
});

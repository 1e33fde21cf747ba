// Replays the examples and the invalid corpus through kube-apiserver's own CRD and
// custom-resource validation (k8s.io/apiextensions-apiserver at the pinned Kubernetes
// version, built by build-crd-check.sh): the CRDs must be accepted (structural
// schema, CEL compiling within the cost budget), every example must pass, and every
// fixture must be rejected at its field (or a parent) with the same message zod
// reports whenever a CEL rule carries it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';

const root = resolve(import.meta.dirname, '..', '..');
const fixturesDir = join(root, 'test', 'fixtures', 'invalid');
const examplesDir = join(root, 'examples');
const manifestsDir = join(root, 'crds', 'manifests');

interface FieldError {
  field: string;
  type: string;
  detail: string;
  error: string;
}
interface Report {
  crds: { name: string; errors: FieldError[] }[];
  objects: { file: string; errors: FieldError[] }[];
}

function header(text: string, key: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`# ${key}: `));
  assert.ok(line !== undefined, `missing "# ${key}:" header`);
  return line.slice(`# ${key}: `.length);
}

function celMessages(node: unknown, into: Set<string>): void {
  if (typeof node !== 'object' || node === null) return;
  const rules = (node as Record<string, unknown>)['x-kubernetes-validations'];
  if (Array.isArray(rules)) for (const rule of rules as { message?: string }[]) if (rule.message !== undefined) into.add(rule.message);
  for (const value of Object.values(node)) celMessages(value, into);
}

function isSelfOrAncestor(parent: string, path: string): boolean {
  if (parent === path) return true;
  return path.startsWith(parent) && (path[parent.length] === '.' || path[parent.length] === '[');
}

function crdCheck(args: readonly string[]): Report {
  const bin = execFileSync('bash', [join(root, 'test', 'crds', 'build-crd-check.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return JSON.parse(execFileSync(bin, [manifestsDir, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 })) as Report;
}

void test('kube-apiserver validation accepts the CRDs and examples and rejects every invalid fixture', { timeout: 20 * 60_000 }, (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'keyvirt-crd-check-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  // One object per file: split the multi-document examples.
  const examples: string[] = [];
  for (const file of readdirSync(examplesDir).filter((f) => f.endsWith('.yaml'))) {
    parseAllDocuments(readFileSync(join(examplesDir, file), 'utf8')).forEach((doc, i) => {
      const path = join(tmp, `${file}.${i}.json`);
      writeFileSync(path, JSON.stringify(doc.toJS()));
      examples.push(path);
    });
  }
  const fixtures = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(fixturesDir, f));
  const report = crdCheck([...examples, ...fixtures]);

  const crdFiles = readdirSync(manifestsDir).filter((f) => parseAllDocuments(readFileSync(join(manifestsDir, f), 'utf8')).some((d) => (d.toJS() as { kind?: unknown } | null)?.kind === 'CustomResourceDefinition'));
  assert.equal(report.crds.length, crdFiles.length, 'every generated CRD is checked');
  assert.ok(report.crds.length >= 5);
  for (const crd of report.crds) assert.deepEqual(crd.errors, [], crd.name);

  const byFile = new Map(report.objects.map((o) => [o.file, o.errors]));
  for (const example of examples) assert.deepEqual(byFile.get(example), [], example);

  const messages = new Set<string>();
  for (const file of readdirSync(manifestsDir)) for (const doc of parseAllDocuments(readFileSync(join(manifestsDir, file), 'utf8'))) celMessages(doc.toJS(), messages);
  assert.ok(fixtures.length >= 40);
  for (const fixture of fixtures) {
    const text = readFileSync(fixture, 'utf8');
    const path = header(text, 'expect-path');
    const message = header(text, 'expect-message');
    const errors = byFile.get(fixture) ?? [];
    assert.ok(errors.length > 0, `kube-apiserver accepted ${fixture}`);
    const atField = errors.filter((e) => isSelfOrAncestor(e.field, path));
    assert.ok(atField.length > 0, `${fixture}: no error at ${path}: ${JSON.stringify(errors)}`);
    if (messages.has(message)) assert.ok(atField.some((e) => e.detail === message), `${fixture}: "${message}" not reported: ${JSON.stringify(errors)}`);
  }
});

const nfsDomain = {
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'StorageDomain',
  metadata: { name: 'shared' },
  spec: { type: 'nfs', nfs: { server: 'nfs.example.internal', path: '/exports/vmdata' } },
};
const migration = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachineMigration', metadata: { name: 'm', namespace: 'default' }, spec: { vmName: 'web-1' } };

void test('kube-apiserver validation enforces the update-only rules', { timeout: 20 * 60_000 }, (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'keyvirt-crd-update-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const write = (name: string, obj: object): string => {
    const path = join(tmp, `${name}.json`);
    writeFileSync(path, JSON.stringify(obj));
    return path;
  };
  const cases = {
    typeChanged: [nfsDomain, { ...nfsDomain, spec: { type: 'local', local: { path: '/srv/images' } } }],
    thresholdsChanged: [nfsDomain, { ...nfsDomain, spec: { ...nfsDomain.spec, thresholds: { warningPercent: 90 } } }],
    migrationRetargeted: [migration, { ...migration, spec: { vmName: 'web-2' } }],
    migrationUnchanged: [migration, migration],
  } as const;
  const args = Object.entries(cases).map(([name, [before, after]]) => `--update=${write(`${name}-old`, before)},${write(`${name}-new`, after)}`);
  const details = crdCheck(args).objects.map((o) => o.errors.map((e) => `${e.field}: ${e.detail}`));
  assert.deepEqual(details, [
    ['spec.type: type cannot be changed'],
    [],
    ['spec: a migration cannot be changed; delete it to cancel it'],
    [],
  ]);
});

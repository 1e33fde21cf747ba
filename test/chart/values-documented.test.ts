// Every value the chart takes is in the README's Values table, and every value the table
// names exists: a user reads there what `--set` accepts. The table abbreviates within a
// row (`operator.image.repository` / `.tag`, `… / renewDeadlineMs`): a name that is not a
// whole path continues the path of the row's first name.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';

const repo = path.resolve(import.meta.dirname, '../..');
const values: unknown = parse(readFileSync(path.join(repo, 'charts/keyvirt/values.yaml'), 'utf8'));
const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');

/** Free-form maps and lists of Kubernetes fields: documented as one value, not key by key. */
const OPAQUE = new Set(['resources', 'nodeSelector', 'tolerations', 'affinity', 'labels', 'updateStrategy', 'vmNamespaces']);
/** Every part's image takes the same keys, documented once in the Images section. */
const IMAGE_KEYS = new Set(['registry', 'pullPolicy']);

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The dotted paths of the values' leaves (opaque maps and lists count as leaves). */
function leafPaths(node: unknown, prefix = ''): string[] {
  if (!isMap(node)) return [prefix];
  return Object.entries(node).flatMap(([key, child]) => {
    const at = prefix === '' ? key : `${prefix}.${key}`;
    return OPAQUE.has(key) || !isMap(child) || Object.keys(child).length === 0 ? [at] : leafPaths(child, at);
  });
}

/** The Values table's rows, each one's first cell. */
function tableNames(markdown: string): string[] {
  const start = markdown.indexOf('### Values');
  assert.ok(start >= 0, 'the README has a Values section');
  const lines = markdown.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > first && !l.startsWith('|'));
  const rows = lines.slice(first, end).filter((l) => l.startsWith('| `'));
  return rows.flatMap((row) => {
    const cell = row.split('|')[1] ?? '';
    const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    const [head, ...rest] = names;
    if (head === undefined) return [];
    const base = head.split('.').slice(0, -1).join('.');
    return [head, ...rest.map((n) => (n.startsWith('.') ? `${base}${n}` : n.includes('.') ? n : `${base}.${n}`))];
  });
}

void test('the leaves of a values tree, opaque maps whole', () => {
  assert.deepEqual(leafPaths({ a: { b: 1, resources: { requests: {} } }, c: [], d: {} }), ['a.b', 'a.resources', 'c', 'd']);
});

void test("every chart value is in the README's Values table, and the table names no other", () => {
  const documented = new Set(tableNames(readme));
  const leaves = leafPaths(values);
  const missing = leaves.filter((p) => !documented.has(p) && !(IMAGE_KEYS.has(p.split('.').at(-1) ?? '') && p.split('.').at(-2) === 'image'));
  assert.deepEqual(missing, [], 'values the README does not document');
  const known = new Set(leaves);
  const unknown = [...documented].filter((p) => !known.has(p));
  assert.deepEqual(unknown, [], 'README rows naming values the chart does not take');
});

void test('the Images section documents the keys every image takes', () => {
  for (const key of IMAGE_KEYS) assert.match(readme, new RegExp(`\`image\\.${key}\``));
});

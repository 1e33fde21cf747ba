// Reads YAML manifests from disk: multi-document files of KeyVirt objects (examples,
// fixtures) and the generated CRDs' openAPIV3Schema per kind.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GROUP } from './api-group.ts';
import { kindInfo, type KeyVirtKind } from './kinds.ts';
import type { JsonSchema } from './structural-schema.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
export const MANIFEST_DIR = join(REPO_ROOT, 'crds', 'manifests');

export class ManifestError extends Error {
  override readonly name = 'ManifestError';
}

/** Every document of a YAML file, parsed. */
export function readDocuments(path: string): unknown[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new ManifestError(`${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as unknown;
  });
}

interface CrdShape {
  spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] };
}

/** The openAPIV3Schema of a kind, read from its committed CRD manifest. */
export function committedSchema(kind: KeyVirtKind): JsonSchema {
  const [crd] = readDocuments(join(MANIFEST_DIR, `${GROUP}_${kindInfo(kind).plural}.yaml`)) as CrdShape[];
  const schema = crd?.spec.versions[0]?.schema.openAPIV3Schema;
  if (schema === undefined) throw new ManifestError(`no openAPIV3Schema for ${kind}`);
  return schema;
}

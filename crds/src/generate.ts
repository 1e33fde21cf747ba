// Writes the CRD manifests into crds/manifests and charts/keyvirt/crds, or with
// --check exits non-zero when the committed files differ from what it would write.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { renderManifests } from './crd-manifest.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const outputDirs = [join(repoRoot, 'crds', 'manifests'), join(repoRoot, 'charts', 'keyvirt', 'crds')];

function existingYaml(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => name.endsWith('.yaml'));
  } catch {
    return [];
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The files that differ from the generated ones (missing, changed or stale). */
export function staleFiles(files: ReadonlyMap<string, string>, dirs: readonly string[]): string[] {
  const stale: string[] = [];
  for (const dir of dirs) {
    for (const [name, text] of files) if (readOrUndefined(join(dir, name)) !== text) stale.push(join(dir, name));
    for (const name of existingYaml(dir)) if (!files.has(name)) stale.push(join(dir, name));
  }
  return stale;
}

function write(files: ReadonlyMap<string, string>): void {
  for (const dir of outputDirs) {
    mkdirSync(dir, { recursive: true });
    for (const name of existingYaml(dir)) if (!files.has(name)) rmSync(join(dir, name));
    for (const [name, text] of files) writeFileSync(join(dir, name), text);
  }
}

function main(args: readonly string[]): number {
  const files = renderManifests();
  if (args.includes('--check')) {
    const stale = staleFiles(files, outputDirs);
    if (stale.length === 0) return 0;
    process.stderr.write(
      `The committed CRD manifests differ from the zod schemas:\n${stale.map((f) => `  ${relative(repoRoot, f)}`).join('\n')}\nRun \`npm run generate\` and commit the result.\n`,
    );
    return 1;
  }
  write(files);
  process.stdout.write(`wrote ${files.size} CRDs into ${outputDirs.map((d) => relative(repoRoot, d)).join(' and ')}\n`);
  return 0;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));

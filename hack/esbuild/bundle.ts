// One esbuild bundle as KeyVirt's builds make them (the launcher's, ADR 0077; the
// operator's and node agent's, ADR 0125): for the pinned Node.js, ASCII output, no
// legal comments, a metafile to check the inputs against, and no warning allowed (a
// warning — an import.meta in CommonJS, a require esbuild cannot follow — is a program
// that may fail at run time).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';
import type { BuildFailure, BuildOptions, Message, Metafile } from 'esbuild';

/** This file: the content hashes of the builds cover it. */
export const BUNDLE_OPTIONS_FILE: string = import.meta.filename;

/** esbuild's messages, one line each with their place. */
function describe(messages: readonly Message[]): string {
  return messages
    .map((m) => (m.location === null ? m.text : `${m.location.file}:${m.location.line}: ${m.text}`))
    .join('; ');
}

function isBuildFailure(err: unknown): err is BuildFailure {
  return err instanceof Error && Array.isArray((err as Partial<BuildFailure>).errors);
}

/**
 * Bundles with `options` (entry points, output, format and the build's own settings)
 * and returns the metafile. A build error or warning throws `fail(message)`, naming
 * `what` was bundled.
 */
export function bundleStrict(what: string, options: BuildOptions, fail: (message: string, cause?: unknown) => Error): Metafile {
  let result;
  try {
    result = buildSync({
      ...options,
      bundle: true,
      platform: 'node',
      target: `node${process.versions.node}`,
      charset: 'ascii',
      legalComments: 'none',
      metafile: true,
      logLevel: 'silent',
    });
  } catch (err) {
    if (isBuildFailure(err)) throw fail(`cannot bundle ${what}: ${describe(err.errors)}`, err);
    throw err;
  }
  if (result.warnings.length > 0) throw fail(`the bundle of ${what} has warnings: ${describe(result.warnings)}`);
  return result.metafile;
}

/** The files under `dir` (recursively, sorted) that are not tests and that `keep` takes (by their path in `dir`). */
export function sourceFiles(dir: string, keep: (relative: string) => boolean = () => true): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => !f.endsWith('.test.ts') && keep(f) && fs.statSync(path.join(dir, f)).isFile())
    .map((f) => path.join(dir, f))
    .sort();
}

/**
 * A build's content hash (16 hex digits): `header` (the tools' versions), then each of
 * `files` by its path under `root` and its content (`(absent)` for a missing one).
 */
export function contentHash(header: string, root: string, files: readonly string[]): string {
  const hash = createHash('sha256');
  hash.update(`${header}\n`);
  for (const file of files) {
    hash.update(`${path.relative(root, file)}\n`);
    hash.update(fs.existsSync(file) ? fs.readFileSync(file) : '(absent)');
    hash.update('\n');
  }
  return hash.digest('hex').slice(0, 16);
}

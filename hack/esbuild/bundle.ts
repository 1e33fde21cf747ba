// One esbuild bundle as KeyVirt's builds make them (the launcher's, ADR 0077; the
// operator's and node agent's, ADR 0125): for the pinned Node.js, ASCII output, no
// legal comments, a metafile to check the inputs against, and no warning allowed (a
// warning — an import.meta in CommonJS, a require esbuild cannot follow — is a program
// that may fail at run time).
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

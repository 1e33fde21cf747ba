// The launcher as its image carries it: one CommonJS file bundled from the TypeScript
// sources (which stay the truth) with the third-party packages it uses (zod, pino), so
// that a launcher pod neither loads Node's TypeScript stripper (a WebAssembly module of
// ~10 MiB) nor strips on every start, and can run under V8's lite mode, which has no
// WebAssembly (ADR 0077). Why one CommonJS file (ADR 0111): Node's builtins are then
// loaded with require(), not through ESM import, whose namespace reads every export of a
// builtin (`import 'node:http'` so evaluates its lazy WebSocket export: undici, ~8 MiB);
// one script instead of ~190 module records; whitespace and syntax minified (names are
// kept, so errors and stack frames still name their functions and classes), ASCII only
// (a one-byte source string in V8's heap). esbuild bundles; `@keyvirt/crds` is the crds
// workspace's sources. The build lives in `<cache>/<hash>/`, where the hash covers every
// input (the launcher's and crds' sources and manifests, the lock file that pins the
// bundled packages and esbuild, Node's version and this file): a changed input is a new
// directory, an unchanged one is reused as is.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';
import type { BuildFailure, Message, Metafile } from 'esbuild';

/**
 * The Node flags the launcher image runs with (docs/adr/0077-launcher-overhead.md,
 * 0111-launcher-bundle-and-start.md). `--lite-mode`: V8 without its optimising compilers
 * and with smaller heap reserves; the launcher is I/O-bound (QMP, the agent, a few HTTP
 * requests). It has no WebAssembly, hence no TypeScript stripping: it needs the build.
 */
export const LAUNCHER_NODE_FLAGS: readonly string[] = ['--lite-mode'];

const CRDS_PACKAGE = '@keyvirt/crds';
/** Where the bundle goes inside a build directory (the image's /opt/keyvirt). */
const ENTRY_OUT = path.join('launcher', 'src', 'main.js');

export class LauncherBuildError extends Error {
  override readonly name = 'LauncherBuildError';
}

export interface LauncherBuild {
  /** The build directory (`<cache>/<hash>`). */
  readonly dir: string;
  /** The built entry point, run as `node <flags> <entry>`. */
  readonly entry: string;
  readonly hash: string;
  /** Whether this call built it (false: reused). */
  readonly built: boolean;
}

function listTs(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => path.join(dir, f))
    .sort();
}

/** The content hash of everything a build is made from. */
export function launcherBuildHash(repoRoot: string): string {
  const hash = createHash('sha256');
  hash.update(`node ${process.version}\n`);
  const inputs = [
    import.meta.filename,
    path.join(repoRoot, 'launcher', 'package.json'),
    path.join(repoRoot, 'crds', 'package.json'),
    path.join(repoRoot, 'package-lock.json'),
    ...listTs(path.join(repoRoot, 'launcher', 'src')),
    ...listTs(path.join(repoRoot, 'crds', 'src')),
  ];
  for (const file of inputs) {
    hash.update(`${path.relative(repoRoot, file)}\n`);
    hash.update(fs.existsSync(file) ? fs.readFileSync(file) : '(absent)');
    hash.update('\n');
  }
  return hash.digest('hex').slice(0, 16);
}

function describe(messages: readonly Message[]): string {
  return messages
    .map((m) => (m.location === null ? m.text : `${m.location.file}:${m.location.line}: ${m.text}`))
    .join('; ');
}

function isBuildFailure(err: unknown): err is BuildFailure {
  return err instanceof Error && Array.isArray((err as Partial<BuildFailure>).errors);
}

/** Every bundled file must be the entry, one the content hash covers, or a third-party package. */
function checkInputs(repoRoot: string, entry: string, metafile: Metafile): void {
  const covered = [path.join(repoRoot, 'launcher', 'src'), path.join(repoRoot, 'crds', 'src')];
  const manifest = path.join(repoRoot, 'launcher', 'package.json');
  for (const input of Object.keys(metafile.inputs)) {
    const file = path.resolve(repoRoot, input);
    if (file === entry || file === manifest || covered.some((dir) => file.startsWith(`${dir}${path.sep}`))) continue;
    if (path.relative(repoRoot, file).split(path.sep).includes('node_modules')) continue;
    throw new LauncherBuildError(`import of ${path.relative(repoRoot, file)}, outside the launcher's and crds' sources`);
  }
}

/**
 * Bundles `entry` (by default the launcher's) into `outfile` as the launcher is built
 * (CommonJS: a `.cjs` name, or a `.js` beside a manifest of `type: commonjs`):
 * one CommonJS script of the entry, the launcher's and crds' sources and the packages
 * they import. Throws LauncherBuildError on a build error or warning.
 */
export function bundleLauncherScript(repoRoot: string, outfile: string, entry: string = path.join(repoRoot, 'launcher', 'src', 'launcher-main.ts')): void {
  let metafile: Metafile | undefined;
  let warnings: Message[];
  try {
    const result = buildSync({
      absWorkingDir: repoRoot,
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: `node${process.versions.node}`,
      alias: { [CRDS_PACKAGE]: path.join(repoRoot, 'crds', 'src', 'index.ts') },
      minifyWhitespace: true,
      minifySyntax: true,
      charset: 'ascii',
      legalComments: 'none',
      metafile: true,
      logLevel: 'silent',
    });
    metafile = result.metafile;
    warnings = result.warnings;
  } catch (err) {
    if (isBuildFailure(err)) throw new LauncherBuildError(`cannot bundle the launcher: ${describe(err.errors)}`, { cause: err });
    throw err;
  }
  // A warning (an import.meta in CommonJS, a require esbuild cannot follow) is a launcher that may fail at run time.
  if (warnings.length > 0) throw new LauncherBuildError(`the launcher bundle has warnings: ${describe(warnings)}`);
  checkInputs(repoRoot, entry, metafile);
}

/** Builds the launcher into `<cacheDir>/<hash>` unless that build exists; returns it. */
export function buildLauncher(repoRoot: string, cacheDir: string): LauncherBuild {
  const hash = launcherBuildHash(repoRoot);
  const dir = path.join(cacheDir, hash);
  const entry = path.join(dir, ENTRY_OUT);
  if (fs.existsSync(entry)) return { dir, entry, hash, built: false };
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    bundleLauncherScript(repoRoot, path.join(tmp, ENTRY_OUT));
    // main.js is CommonJS: the nearest manifest says so (the image's root manifest says module).
    fs.writeFileSync(path.join(tmp, 'launcher', 'package.json'), `${JSON.stringify({ private: true, type: 'commonjs' })}\n`);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  try {
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // Another process built the same hash at the same time: theirs is as good.
    if (!fs.existsSync(entry)) throw new LauncherBuildError(`cannot install the launcher build in ${dir}`, { cause: err });
    return { dir, entry, hash, built: false };
  }
  return { dir, entry, hash, built: true };
}

if (import.meta.main) {
  const repoRoot = path.resolve(import.meta.dirname, '..', '..');
  const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack', '.cache', 'launcher-build'));
  process.stdout.write(`${[process.execPath, ...LAUNCHER_NODE_FLAGS, build.entry].join(' ')}\n`);
}

// The launcher as its image carries it: plain JavaScript built from the TypeScript
// sources (which stay the truth), so that a launcher pod neither loads Node's
// TypeScript stripper (a WebAssembly module of ~10 MiB) nor strips on every start, and
// can run under V8's lite mode, which has no WebAssembly. Node strips the types
// (positions kept, so stack traces point at the same line and column as the sources);
// relative `.ts` specifiers become `.js`; `@keyvirt/crds` is built beside it as a
// package of its own. Only the modules reachable from the entry point are built.
// The build lives in `<cache>/<hash>/`, where the hash covers every input (the
// sources, the package manifests, Node's version and this file): a changed source is
// a new directory, an unchanged one is reused as is. Third-party packages (zod, pino)
// are not copied: they resolve from the repository's node_modules, as in the image.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import module from 'node:module';
import path from 'node:path';

/**
 * The Node flags the launcher image runs with (docs/adr/0077-launcher-overhead.md).
 * `--lite-mode`: V8 without its optimising compilers and with smaller heap reserves;
 * the launcher is I/O-bound (QMP, the agent, a few HTTP requests), and this is what
 * takes its resident memory from ~89 to ~69 MiB at ~10 % more CPU at start. It has no
 * WebAssembly, hence no TypeScript stripping: it needs the built launcher.
 */
export const LAUNCHER_NODE_FLAGS: readonly string[] = ['--lite-mode'];

/** Where a relative specifier, the crds package or a JSON import sits in stripped code. */
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"\n]+)\2/g;
const CRDS_PACKAGE = '@keyvirt/crds';
const CRDS_OUT_DIR = path.join('node_modules', '@keyvirt', 'crds');

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

interface SourceTree {
  /** Repository-relative source path → built path relative to the build directory. */
  readonly out: Map<string, string>;
  /** Built path → content. */
  readonly files: Map<string, string>;
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
    ...listTs(path.join(repoRoot, 'launcher', 'src')),
    ...listTs(path.join(repoRoot, 'crds', 'src')),
  ];
  for (const file of inputs) {
    hash.update(`${path.relative(repoRoot, file)}\n`);
    hash.update(fs.readFileSync(file));
    hash.update('\n');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Where a repository file goes inside the build (crds becomes a package under node_modules). */
function outPath(repoRoot: string, file: string): string {
  const rel = path.relative(repoRoot, file);
  const crds = path.relative(path.join(repoRoot, 'crds'), file);
  const inCrds = !crds.startsWith('..') && !path.isAbsolute(crds);
  const target = inCrds ? path.join(CRDS_OUT_DIR, crds) : rel;
  return target.endsWith('.ts') ? `${target.slice(0, -3)}.js` : target;
}

function stripTypes(source: string, file: string): string {
  try {
    // Strip only (no transform): erasable syntax is all the house allows, and positions stay.
    return module.stripTypeScriptTypes(source, { mode: 'strip' });
  } catch (err) {
    throw new LauncherBuildError(`cannot strip the types of ${file}`, { cause: err });
  }
}

/** Follows the runtime imports (type-only imports are gone once stripped) from the entry. */
function collect(repoRoot: string, entry: string): SourceTree {
  const out = new Map<string, string>();
  const files = new Map<string, string>();
  const crdsEntry = path.join(repoRoot, 'crds', 'src', 'index.ts');
  const pending = [entry];
  const hashed = [path.join(repoRoot, 'launcher', 'src'), path.join(repoRoot, 'crds', 'src')];
  const manifest = path.join(repoRoot, 'launcher', 'package.json');
  const enqueue = (file: string): string => {
    if (!fs.existsSync(file)) throw new LauncherBuildError(`import of a missing file: ${path.relative(repoRoot, file)}`);
    // The content hash covers these alone: anything else would leave a build stale.
    if (file !== manifest && !hashed.some((dir) => file.startsWith(`${dir}${path.sep}`))) {
      throw new LauncherBuildError(`import of ${path.relative(repoRoot, file)}, outside the launcher's and crds' sources`);
    }
    if (!out.has(file)) {
      out.set(file, outPath(repoRoot, file));
      pending.push(file);
    }
    return out.get(file) ?? '';
  };
  out.set(entry, outPath(repoRoot, entry));
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    const own = out.get(file) ?? '';
    const source = fs.readFileSync(file, 'utf8');
    if (!file.endsWith('.ts')) {
      files.set(own, source);
      continue;
    }
    const code = stripTypes(source, file).replace(SPECIFIER, (match: string, lead: string, quote: string, spec: string) => {
      let target: string;
      if (spec === CRDS_PACKAGE) target = enqueue(crdsEntry);
      else if (spec.startsWith('./') || spec.startsWith('../')) target = enqueue(path.resolve(path.dirname(file), spec));
      else if (spec.startsWith(`${CRDS_PACKAGE}/`)) throw new LauncherBuildError(`${path.relative(repoRoot, file)}: ${spec} is not an export of ${CRDS_PACKAGE}`);
      else return match;
      let rel = path.relative(path.dirname(own), target);
      // Inside the built crds package its own files are relative; from outside it is the package.
      if (target.startsWith(CRDS_OUT_DIR) && !own.startsWith(CRDS_OUT_DIR)) rel = CRDS_PACKAGE;
      else if (!rel.startsWith('.')) rel = `./${rel}`;
      return `${lead}${quote}${rel}${quote}`;
    });
    files.set(own, code);
  }
  return { out, files };
}

/** Builds the launcher into `<cacheDir>/<hash>` unless that build exists; returns it. */
export function buildLauncher(repoRoot: string, cacheDir: string): LauncherBuild {
  const hash = launcherBuildHash(repoRoot);
  const dir = path.join(cacheDir, hash);
  const entry = path.join(dir, 'launcher', 'src', 'main.js');
  if (fs.existsSync(entry)) return { dir, entry, hash, built: false };
  const tree = collect(repoRoot, path.join(repoRoot, 'launcher', 'src', 'main.ts'));
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const [rel, content] of tree.files) {
    fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
    fs.writeFileSync(path.join(tmp, rel), content);
  }
  // The package manifests: `type: module` for the .js files, the crds package's entry.
  const crdsManifest = { name: CRDS_PACKAGE, private: true, type: 'module', exports: { '.': './src/index.js' } };
  fs.writeFileSync(path.join(tmp, CRDS_OUT_DIR, 'package.json'), `${JSON.stringify(crdsManifest, null, 2)}\n`);
  const launcherManifest = path.join(tmp, 'launcher', 'package.json');
  if (!fs.existsSync(launcherManifest)) fs.writeFileSync(launcherManifest, `${JSON.stringify({ type: 'module', private: true })}\n`);
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

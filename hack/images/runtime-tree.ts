// What the operator, node-agent and launcher images carry besides Debian and Node.js:
// an application tree assembled from the repository, with only the production
// dependencies (the closure of the workspaces' `dependencies`, read from
// package-lock.json and copied from node_modules, so nothing is downloaded).
//
//   node hack/images/runtime-tree.ts hash <operator|launcher>   the content hash of the inputs
//   node hack/images/runtime-tree.ts build <operator|launcher> <dir>   writes the tree into <dir>
//
// The operator tree is the operator's and the node agent's bundles (hack/operator-build,
// ADR 0125: KeyVirt's own code of operator/, launcher/ and crds/ in one ES module each,
// under operator/dist/) plus the third-party packages they import.
// The launcher tree is the built launcher (hack/launcher-build, ADR 0077) plus its
// dependencies.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { buildLauncher, launcherBuildHash } from '../launcher-build/build-launcher.ts';
import { buildOperator, operatorBuildHash } from '../operator-build/build-operator.ts';

export class RuntimeTreeError extends Error {
  override readonly name = 'RuntimeTreeError';
}

const LockPackage = z.object({
  version: z.string().optional(),
  link: z.boolean().optional(),
  resolved: z.string().optional(),
  dependencies: z.record(z.string(), z.string()).optional(),
  optionalDependencies: z.record(z.string(), z.string()).optional(),
  peerDependencies: z.record(z.string(), z.string()).optional(),
  peerDependenciesMeta: z.record(z.string(), z.object({ optional: z.boolean().optional() })).optional(),
});
const Lock = z.object({ lockfileVersion: z.literal(3), packages: z.record(z.string(), LockPackage) });
type LockPackages = Record<string, z.infer<typeof LockPackage>>;

/** The images built from a runtime tree, and the workspaces whose dependencies each needs. */
const WORKSPACES = { operator: ['operator', 'launcher', 'crds'], launcher: ['launcher', 'crds'] } as const;
export type TreeKind = keyof typeof WORKSPACES;

/** Where `name` resolves from the lock entry at `from` (Node's node_modules walk), or undefined. */
function resolveFrom(packages: LockPackages, from: string, name: string): string | undefined {
  let dir = from;
  for (;;) {
    const candidate = dir === '' ? `node_modules/${name}` : `${dir}/node_modules/${name}`;
    if (packages[candidate] !== undefined) return candidate;
    if (dir === '') return undefined;
    const at = dir.lastIndexOf('/node_modules/');
    dir = at === -1 ? '' : dir.slice(0, at);
  }
}

/**
 * The lock keys (`node_modules/...`) of the third-party packages the workspaces need at
 * run time, sorted. Workspace packages (links) are followed but not returned.
 */
export function productionClosure(packages: LockPackages, workspaces: readonly string[], exists: (key: string) => boolean): string[] {
  const out = new Set<string>();
  const seen = new Set<string>();
  const pending = [...workspaces];
  for (let key = pending.pop(); key !== undefined; key = pending.pop()) {
    if (seen.has(key)) continue;
    seen.add(key);
    const entry = packages[key];
    if (entry === undefined) throw new RuntimeTreeError(`package-lock.json has no entry ${key}`);
    if (entry.link === true) {
      if (entry.resolved !== undefined) pending.push(entry.resolved);
      continue;
    }
    if (key.includes('node_modules/')) out.add(key);
    const optionalPeers = new Set(Object.entries(entry.peerDependenciesMeta ?? {}).filter(([, m]) => m.optional === true).map(([n]) => n));
    const required = [...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.peerDependencies ?? {}).filter((n) => !optionalPeers.has(n))];
    for (const name of required) {
      const found = resolveFrom(packages, key, name);
      if (found === undefined) throw new RuntimeTreeError(`${key === '' ? 'the root' : key} needs ${name}, which package-lock.json does not hold`);
      pending.push(found);
    }
    for (const name of Object.keys(entry.optionalDependencies ?? {})) {
      const found = resolveFrom(packages, key, name);
      if (found !== undefined && exists(found)) pending.push(found);
    }
  }
  return [...out].sort();
}

function readLock(repoRoot: string): LockPackages {
  const parsed = Lock.safeParse(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')));
  if (!parsed.success) throw new RuntimeTreeError(`package-lock.json: ${parsed.error.message}`);
  return parsed.data.packages;
}

/** The content hash of everything a tree of this kind is made from (16 hex digits). */
export function runtimeTreeHash(repoRoot: string, kind: TreeKind): string {
  const hash = createHash('sha256');
  hash.update(`${kind}\n`);
  hash.update(fs.readFileSync(import.meta.filename));
  // The dependencies as locked (name, version, integrity): a devDependency changes nothing.
  const packages = readLock(repoRoot);
  for (const key of productionClosure(packages, WORKSPACES[kind], (k) => fs.existsSync(path.join(repoRoot, k)))) {
    hash.update(`${key} ${JSON.stringify(packages[key])}\n`);
  }
  if (kind === 'launcher') hash.update(`launcher build ${launcherBuildHash(repoRoot)}\n`);
  else hash.update(`operator build ${operatorBuildHash(repoRoot)}\n`);
  return hash.digest('hex').slice(0, 16);
}

/** Files of a package Node never loads: type declarations and source maps (no --enable-source-maps). */
const NOT_RUNTIME = /\.(d\.[cm]?ts|map)$/;

function copyPackages(repoRoot: string, dest: string, kind: TreeKind): void {
  const packages = readLock(repoRoot);
  const keys = productionClosure(packages, WORKSPACES[kind], (key) => fs.existsSync(path.join(repoRoot, key)));
  for (const key of keys) {
    const from = path.join(repoRoot, key);
    if (!fs.existsSync(from)) throw new RuntimeTreeError(`${key} is in package-lock.json but not installed: run npm ci`);
    // Nested node_modules of a package are copied as their own keys (when needed).
    fs.cpSync(from, path.join(dest, key), {
      recursive: true,
      filter: (src) => src === from || (path.relative(from, src).split(path.sep)[0] !== 'node_modules' && !NOT_RUNTIME.test(src)),
    });
  }
}

/** Writes the tree of `kind` into `dest` (which must not exist). */
export function buildRuntimeTree(repoRoot: string, kind: TreeKind, dest: string): void {
  if (fs.existsSync(dest)) throw new RuntimeTreeError(`${dest} exists`);
  fs.mkdirSync(dest, { recursive: true });
  fs.writeFileSync(path.join(dest, 'package.json'), `${JSON.stringify({ name: `keyvirt-${kind}-image`, private: true, type: 'module' }, null, 2)}\n`);
  if (kind === 'launcher') {
    const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack', '.cache', 'launcher-build'));
    fs.cpSync(build.dir, dest, { recursive: true });
  } else {
    // The packages resolve from operator/dist up to the tree's node_modules.
    const build = buildOperator(repoRoot, path.join(repoRoot, 'hack', '.cache', 'operator-build'));
    fs.cpSync(build.dir, path.join(dest, 'operator', 'dist'), { recursive: true });
  }
  copyPackages(repoRoot, dest, kind);
}

if (import.meta.main) {
  const [command, kindArg, dest] = process.argv.slice(2);
  const kind = z.enum(['operator', 'launcher']).safeParse(kindArg);
  const repoRoot = path.resolve(import.meta.dirname, '..', '..');
  if (!kind.success || (command !== 'hash' && command !== 'build') || (command === 'build' && dest === undefined)) {
    process.stderr.write('usage: runtime-tree.ts hash <operator|launcher> | build <operator|launcher> <dir>\n');
    process.exit(2);
  }
  if (command === 'hash') process.stdout.write(`${runtimeTreeHash(repoRoot, kind.data)}\n`);
  else buildRuntimeTree(repoRoot, kind.data, path.resolve(dest ?? ''));
}

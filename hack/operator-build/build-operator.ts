// The operator and the node agent as their images run them: each one ES module bundled
// by esbuild from the TypeScript sources (which stay the truth), with the KeyVirt
// workspaces it imports (operator, launcher's API, crds) inside and every third-party
// package left to node_modules, run with `--no-experimental-strip-types`. Node then
// never loads its TypeScript stripper (a WebAssembly module that stays resident: ~17 MiB
// of the process's RSS) nor strips ~250 files on every start (docs/adr/0125). The
// packages stay outside: they are what the tree already carries, loaded as Node loads
// them from a checkout, so a bundle changes only how KeyVirt's own code is loaded.
// Stack traces name the bundle's lines and the functions' own names (nothing is
// renamed or minified).
import fs from 'node:fs';
import path from 'node:path';
import { version as esbuildVersion } from 'esbuild';
import type { Metafile } from 'esbuild';
import { z } from 'zod';
import { BUNDLE_OPTIONS_FILE, bundleStrict, contentHash, sourceFiles } from '../esbuild/bundle.ts';

/** What the images run: `node <flags> <dir>/<entry>`. */
export const OPERATOR_BUNDLE = 'operator.mjs';
export const NODE_AGENT_BUNDLE = 'node-agent.mjs';
/**
 * The bundles' Node flags: a `.ts` file loaded at run time (a missed import) fails at
 * once with ERR_UNKNOWN_FILE_EXTENSION instead of loading the stripper unseen.
 */
export const BUNDLE_NODE_FLAGS: readonly string[] = ['--no-experimental-strip-types'];
/** Files a bundle reads beside itself at run time (`import.meta.dirname`), copied next to it. */
const BESIDE = [path.join('operator', 'src', 'node-agent', 'device-plugin', 'api.proto')];
const WORKSPACE_SCOPE = '@keyvirt/';

export class OperatorBuildError extends Error {
  override readonly name = 'OperatorBuildError';
}

const Manifest = z.object({ dependencies: z.record(z.string(), z.string()).optional() });

/**
 * The operator, launcher and crds workspaces of `tree`: its operator/, and the others
 * where its node_modules/@keyvirt links lead (a checkout's own; a revision's operator
 * tree may borrow another checkout's).
 */
function workspaceDirs(tree: string): string[] {
  return [path.join(tree, 'operator'), ...['launcher', 'crds'].map((ws) => fs.realpathSync(path.join(tree, 'node_modules', '@keyvirt', ws)))];
}

/** The third-party packages the operator, launcher and crds workspaces of `tree` depend on. */
function thirdPartyPackages(tree: string): string[] {
  const manifests = workspaceDirs(tree).map((dir) => path.join(dir, 'package.json'));
  const names = new Set<string>();
  for (const file of manifests) {
    const parsed = Manifest.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
    if (!parsed.success) throw new OperatorBuildError(`${file}: ${parsed.error.message}`);
    for (const name of Object.keys(parsed.data.dependencies ?? {})) if (!name.startsWith(WORKSPACE_SCOPE)) names.add(name);
  }
  return [...names].sort();
}

/**
 * Every bundled file must be a source or the manifest of the operator, launcher or crds
 * workspace (what the image's content hash covers; the launcher reads its version from
 * its manifest): a package inside the bundle would be a second copy.
 */
function checkInputs(tree: string, metafile: Metafile): void {
  const dirs = workspaceDirs(tree).map((dir) => fs.realpathSync(dir));
  const sources = dirs.map((dir) => `${path.join(dir, 'src')}${path.sep}`);
  const manifests = new Set(dirs.map((dir) => path.join(dir, 'package.json')));
  for (const input of Object.keys(metafile.inputs)) {
    const file = fs.realpathSync(path.resolve(tree, input));
    if (manifests.has(file)) continue;
    if (sources.some((dir) => file.startsWith(dir)) && !file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    throw new OperatorBuildError(`the bundle would hold ${input}, which is not a source of the operator, launcher or crds workspace: declare its package in the workspace's dependencies`);
  }
}

/**
 * Bundles the operator and the node agent of `tree` (a checkout, or a tree holding
 * operator/ with node_modules beside it) into `outDir`, which must be inside `tree`'s
 * directory tree so that node_modules resolves from it. Throws OperatorBuildError on a
 * build error or warning.
 */
export function bundleOperator(tree: string, outDir: string): { readonly operator: string; readonly nodeAgent: string } {
  const metafile = bundleStrict(
    'the operator',
    {
      absWorkingDir: tree,
      entryPoints: {
        [path.parse(OPERATOR_BUNDLE).name]: path.join(tree, 'operator', 'src', 'main.ts'),
        [path.parse(NODE_AGENT_BUNDLE).name]: path.join(tree, 'operator', 'src', 'node-agent', 'main.ts'),
      },
      outdir: outDir,
      outExtension: { '.js': '.mjs' },
      format: 'esm',
      external: thirdPartyPackages(tree),
    },
    (message, cause) => new OperatorBuildError(message, { cause }),
  );
  checkInputs(tree, metafile);
  for (const file of BESIDE) fs.copyFileSync(path.join(tree, file), path.join(outDir, path.basename(file)));
  return { operator: path.join(outDir, OPERATOR_BUNDLE), nodeAgent: path.join(outDir, NODE_AGENT_BUNDLE) };
}

export interface OperatorBuild {
  /** The build directory (`<cache>/<hash>`). */
  readonly dir: string;
  readonly operator: string;
  readonly nodeAgent: string;
  readonly hash: string;
}

/**
 * The content hash of a tree's bundles: the workspaces' sources and manifests, Node's
 * and esbuild's versions and the build's files (the packages stay outside the bundles).
 */
export function operatorBuildHash(tree: string): string {
  return contentHash(`node ${process.version} esbuild ${esbuildVersion}`, tree, [
    import.meta.filename,
    BUNDLE_OPTIONS_FILE,
    ...workspaceDirs(tree).flatMap((ws) => [path.join(ws, 'package.json'), ...sourceFiles(path.join(ws, 'src'))]),
  ]);
}

/**
 * Bundles the operator tree `tree` (as bundleOperator) into `<cacheDir>/<hash>` unless
 * that build exists (`cacheDir` inside the tree, so that its node_modules resolves).
 */
export function buildOperator(tree: string, cacheDir: string): OperatorBuild {
  const hash = operatorBuildHash(tree);
  const dir = path.join(cacheDir, hash);
  const built = { dir, operator: path.join(dir, OPERATOR_BUNDLE), nodeAgent: path.join(dir, NODE_AGENT_BUNDLE), hash };
  if (fs.existsSync(built.operator)) return built;
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    bundleOperator(tree, tmp);
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // Another process built the same hash at the same time: theirs is as good.
    if (!fs.existsSync(built.operator)) throw err;
  }
  return built;
}

if (import.meta.main) {
  const [tree, outDir] = process.argv.slice(2);
  if (tree === undefined || outDir === undefined) {
    process.stderr.write('usage: build-operator.ts <tree> <out-dir>\n');
    process.exit(2);
  }
  const built = bundleOperator(path.resolve(tree), path.resolve(outDir));
  process.stdout.write(`${built.operator}\n${built.nodeAgent}\n`);
}

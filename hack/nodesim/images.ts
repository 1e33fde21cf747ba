// The node simulator's "image store": a table from image names to what runs for
// them on this machine. There is no container engine here; a container's root
// filesystem is assembled from the node's system directories plus the directories
// the image names (container-root.ts), and the image decides the entrypoint and PATH.
// An image's own content is also bound where the real image has it (the launcher build
// at /opt/keyvirt), so a command naming that path runs as on a real node.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../launcher-build/build-launcher.ts';
import { BUNDLE_NODE_FLAGS, buildOperator, type OperatorBuild } from '../operator-build/build-operator.ts';
import type { ImageBind } from './container-root.ts';

export interface ImageEntry {
  /** Docker ENTRYPOINT: replaced by the container's `command` when that is set. */
  readonly entrypoint: readonly string[];
  /** Docker CMD: replaced by the container's `args` when those are set. */
  readonly cmd: readonly string[];
  /** Directories put first on PATH. */
  readonly pathPrefix: readonly string[];
  /** Node directories the image's root holds (read-only), besides the system directories. */
  readonly rootPaths: readonly string[];
  /** Paths inside rootPaths that are not part of the image (node state), hidden. */
  readonly hiddenPaths: readonly string[];
  /** Paths inside hidden paths that are part of the image after all. */
  readonly revealedPaths: readonly string[];
  /** Node directories the image carries at a path of its own (bound read-only there). */
  readonly imageBinds?: readonly ImageBind[];
}

/** Where the KeyVirt images carry their application tree (the Containerfiles' `COPY app/ /opt/keyvirt/`). */
export const IMAGE_APP_DIR = '/opt/keyvirt';

export class UnknownImageError extends Error {
  override readonly name = 'UnknownImageError';
}

/** The repository name of an image reference, without registry, tag or digest. */
export function imageRepository(image: string): string {
  const withoutDigest = image.split('@')[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.indexOf(':', lastSlash + 1);
  const name = colon === -1 ? withoutDigest : withoutDigest.slice(0, colon);
  const parts = name.split('/');
  // Drop a registry host (has a dot, a colon or is localhost).
  if (parts.length > 1 && /[.:]|^localhost$/.test(parts[0] ?? '')) parts.shift();
  if (parts[0] === 'library') parts.shift();
  return parts.join('/');
}

/** Builds (once) a directory of busybox applet links so `busybox` images run busybox's tools. */
export function busyboxBin(stateDir: string): string {
  const dir = path.join(stateDir, 'images/busybox/bin');
  if (fs.existsSync(path.join(dir, 'sh'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.mkdirSync(tmp, { recursive: true });
  const applets = execFileSync('busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a !== '');
  const busybox = execFileSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).trim();
  for (const applet of applets) fs.symlinkSync(busybox, path.join(tmp, applet));
  try {
    fs.renameSync(tmp, dir);
  } catch {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** What the `keyvirt/launcher` image runs: a built launcher (hack/launcher-build) and its Node flags. */
export interface LauncherImage {
  /** The build directory, part of the image's root at its node path and at /opt/keyvirt (the real image's tree). */
  readonly dir: string;
  readonly entry: string;
  readonly nodeFlags: readonly string[];
}

export interface ImageTableOptions {
  readonly repoRoot: string;
  readonly stateDir: string;
  readonly nodeBinary: string;
  /** Builds (or finds, by content hash) the launcher image; by default from the repository's sources. */
  readonly launcherImage?: (repoRoot: string) => LauncherImage;
  /** Builds (or finds, by content hash) the operator's and node agent's bundles; by default from the repository's sources. */
  readonly operatorBuild?: (repoRoot: string) => OperatorBuild;
}

/** The launcher as its image carries it: JavaScript built from the current sources, cached by content hash. */
export function builtLauncherImage(repoRoot: string): LauncherImage {
  const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack/.cache/launcher-build'));
  return { dir: build.dir, entry: build.entry, nodeFlags: LAUNCHER_NODE_FLAGS };
}

/** The operator and the node agent as their image carries them: bundles of the current sources, cached by content hash. */
export function builtOperatorBundles(repoRoot: string): OperatorBuild {
  return buildOperator(repoRoot, path.join(repoRoot, 'hack/.cache/operator-build'));
}

/**
 * The table. `keyvirt/<part>` images run that part of this repository on the
 * pinned Node.js; `busybox` runs busybox applets; `keyvirt/host` runs host tools
 * by absolute path or PATH lookup.
 */
export function resolveImage(image: string, options: ImageTableOptions): ImageEntry {
  const repo = imageRepository(image);
  // The repository is the image; the cluster's state and the build cache in it are not.
  const repository = {
    rootPaths: [options.repoRoot, path.dirname(options.nodeBinary)],
    hiddenPaths: [options.stateDir, path.join(options.repoRoot, 'hack/.cache')],
    revealedPaths: [],
  };
  const node = (main: string): ImageEntry => ({
    entrypoint: [options.nodeBinary, path.join(options.repoRoot, main)],
    cmd: [],
    pathPrefix: [path.dirname(options.nodeBinary)],
    ...repository,
  });
  const bare = { rootPaths: [], hiddenPaths: [], revealedPaths: [] };
  switch (repo) {
    case 'keyvirt/launcher': {
      // Rebuilt when a source changed since the last pod (the hash check reads the sources, ~20 ms).
      // The build directory is the real image's /opt/keyvirt (its pod script at
      // /opt/keyvirt/launcher/pod/vm-pod.sh); the entrypoint keeps naming the node path.
      const image = (options.launcherImage ?? builtLauncherImage)(options.repoRoot);
      return {
        ...node('launcher/src/main.ts'),
        entrypoint: [options.nodeBinary, ...image.nodeFlags, image.entry],
        revealedPaths: [image.dir],
        imageBinds: [{ source: image.dir, target: IMAGE_APP_DIR }],
      };
    }
    case 'keyvirt/operator':
    case 'keyvirt/node-agent': {
      // Rebuilt when a source changed since the last pod, as the launcher is. Not bound at
      // /opt/keyvirt: the build directory is only the image's operator/dist, and the
      // bundles' packages resolve from the repository's node_modules.
      const build = (options.operatorBuild ?? builtOperatorBundles)(options.repoRoot);
      return {
        ...node('operator/src/main.ts'),
        entrypoint: [options.nodeBinary, ...BUNDLE_NODE_FLAGS, repo === 'keyvirt/operator' ? build.operator : build.nodeAgent],
        revealedPaths: [build.dir],
      };
    }
    case 'keyvirt/host':
      return { entrypoint: [], cmd: ['sh'], pathPrefix: [], ...bare };
    case 'busybox':
      return { entrypoint: [], cmd: ['sh'], pathPrefix: [busyboxBin(options.stateDir)], ...bare, rootPaths: [busyboxBin(options.stateDir)] };
    default:
      throw new UnknownImageError(`image ${image} is not in the node simulator's image table (see hack/nodesim/images.ts)`);
  }
}

/** The argv a container runs, following Docker's ENTRYPOINT/CMD rules. */
export function containerArgv(entry: ImageEntry, command: readonly string[] | undefined, args: readonly string[] | undefined): string[] {
  if (command !== undefined && command.length > 0) return [...command, ...(args ?? [])];
  return [...entry.entrypoint, ...(args !== undefined && args.length > 0 ? args : entry.cmd)];
}

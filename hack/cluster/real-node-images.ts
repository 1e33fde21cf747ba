// Images for the real nodes' containerd: built here as OCI archives (no registry, nothing
// pulled), named by the content hash of what went into them, and imported into a node's
// `k8s.io` namespace with `ctr images import` only when that node lacks that archive.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './layout.ts';

export class NodeImageError extends Error {
  override readonly name = 'NodeImageError';
}

export interface ImageArchive {
  /** The fully qualified reference the archive carries (what a pod names). */
  readonly ref: string;
  /** An OCI (or docker) archive `ctr images import` accepts. */
  readonly file: string;
  /** sha256 of the archive: a node imports it again only when this changes. */
  readonly sha256: string;
}

export const imageCacheDir: string = path.join(repoRoot, 'hack/.cache/real-node-images');

function sha256Of(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function sha256Text(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A tar of `dir` that depends only on its content (names sorted, times and owners fixed). */
function reproducibleTar(dir: string, out: string): void {
  execFileSync('tar', [
    '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-C', dir, '-cf', out, '.',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface ImageRecipe {
  /** Repository part of the reference, e.g. `keyvirt/test-busybox`. */
  readonly repository: string;
  /** Fills the (empty) root file system directory. */
  readonly fill: (rootfs: string) => void;
  readonly entrypoint: readonly string[];
  readonly cmd?: readonly string[];
  readonly user?: string;
}

/** Builds (or finds in the cache) the OCI archive of a recipe; its tag is the hash of its layer and config. */
export function buildImageArchive(recipe: ImageRecipe): ImageArchive {
  fs.mkdirSync(imageCacheDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-image-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    fs.mkdirSync(rootfs);
    recipe.fill(rootfs);
    const layerTar = path.join(work, 'layer.tar');
    reproducibleTar(rootfs, layerTar);
    const layerDigest = sha256Of(layerTar);
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Entrypoint: recipe.entrypoint, Cmd: recipe.cmd ?? [], User: recipe.user ?? '', WorkingDir: '/',
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created_by: 'hack/cluster/real-node-images.ts' }],
    });
    const tag = sha256Text(`${layerDigest}\n${config}`).slice(0, 16);
    const ref = `localhost/${recipe.repository}:${tag}`;
    const file = path.join(imageCacheDir, `${recipe.repository.replaceAll('/', '_')}-${tag}.tar`);
    if (!fs.existsSync(file)) writeOciLayout(work, { layerTar, layerDigest, config, ref, tag }, file);
    return { ref, file, sha256: sha256Of(file) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

interface ImageParts {
  readonly layerTar: string;
  readonly layerDigest: string;
  readonly config: string;
  readonly ref: string;
  readonly tag: string;
}

/** Writes an OCI image layout of one layer and packs it as the archive `file`. */
function writeOciLayout(work: string, parts: ImageParts, file: string): void {
  const { layerTar, layerDigest, config, ref, tag } = parts;
  const layout = path.join(work, 'oci');
  const blobs = path.join(layout, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  fs.copyFileSync(layerTar, path.join(blobs, layerDigest));
  const configDigest = sha256Text(config);
  fs.writeFileSync(path.join(blobs, configDigest), config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${configDigest}`, size: Buffer.byteLength(config) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: fs.statSync(layerTar).size }],
  });
  const manifestDigest = sha256Text(manifest);
  fs.writeFileSync(path.join(blobs, manifestDigest), manifest);
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${manifestDigest}`, size: Buffer.byteLength(manifest),
      annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
    }],
  }));
  const tmp = `${file}.tmp-${process.pid}`;
  reproducibleTar(layout, tmp);
  fs.renameSync(tmp, file);
}

/** A busybox image (Debian's busybox-static and its applet links): sh, nc, httpd, wget, sleep, … */
export function busyboxImage(): ImageArchive {
  return buildImageArchive({
    repository: 'keyvirt/test-busybox',
    fill: (rootfs) => {
      for (const dir of ['bin', 'tmp', 'etc', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(rootfs, dir));
      fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
      fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
      fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
      const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a));
      for (const applet of applets) if (applet !== 'busybox') fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
      fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
      fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    },
    entrypoint: ['/bin/sh'],
  });
}

/**
 * An image of the project built by hack/images/build.sh (podman; `pause`, `operator`,
 * `launcher`, `node-agent`), exported once per content hash as a docker archive (both its
 * tags: the content hash the reference names, and its version).
 */
export function projectImage(name: string): ImageArchive {
  const script = path.join(repoRoot, 'hack/images/build.sh');
  const run = (args: readonly string[]): string => {
    try {
      return execFileSync('bash', [script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const stderr = (err as { stderr?: unknown }).stderr;
      throw new NodeImageError(`hack/images/build.sh ${args.join(' ')}: ${typeof stderr === 'string' ? stderr.trim() : String(err)}`);
    }
  };
  const ref = run([name]).trim().split('\n').at(-1)?.split(' ')[1];
  if (ref === undefined || !/^[^\s:]+\/[^\s:]+:[0-9a-f]{16}$/.test(ref)) throw new NodeImageError(`hack/images/build.sh ${name} named no content-hash reference`);
  fs.mkdirSync(imageCacheDir, { recursive: true });
  const file = path.join(imageCacheDir, `${name}-${ref.slice(ref.lastIndexOf(':') + 1)}.docker.tar`);
  if (!fs.existsSync(file)) {
    const tmp = `${file}.tmp-${process.pid}`;
    run(['export', name, tmp]);
    fs.renameSync(tmp, file);
  }
  return { ref, file, sha256: sha256Of(file) };
}

/** containerd's sandbox image: Kubernetes' pause, from hack/images/build.sh. */
export function pauseImage(): ImageArchive {
  return projectImage('pause');
}

/** Imports `image` into the node's containerd (namespace k8s.io) unless the node already has that archive. */
export function importImage(containerdSocket: string, stampDir: string, image: ImageArchive): boolean {
  fs.mkdirSync(stampDir, { recursive: true });
  const stamp = path.join(stampDir, image.ref.replaceAll(/[/:]/g, '_'));
  let have: string | undefined;
  try {
    have = fs.readFileSync(stamp, 'utf8').trim();
  } catch {
    have = undefined;
  }
  if (have === image.sha256) return false;
  try {
    execFileSync('ctr', ['--address', containerdSocket, '--namespace', 'k8s.io', 'images', 'import', image.file], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new NodeImageError(`ctr images import ${image.file}: ${stderr instanceof Buffer ? stderr.toString().trim() : String(err)}`);
  }
  fs.writeFileSync(stamp, `${image.sha256}\n`);
  return true;
}

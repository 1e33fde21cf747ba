// KeyVirt's own images for the real nodes: built (or found by content hash) by
// hack/images/build.sh, exported as archives that containerd's `ctr images import`
// accepts, and named by the content-hash tag the archive itself carries (build.sh exports
// the last build of an image, which a concurrent build of a changed tree may have
// replaced), so a pod names exactly the image its node imported.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { ImageArchive } from '../support/real-nodes.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const buildScript = path.join(repo, 'hack/images/build.sh');
const archiveDir = path.join(repo, 'hack/.cache/real-node-images');

export type KeyVirtImage = 'operator' | 'launcher' | 'node-agent';
const IMAGES: readonly KeyVirtImage[] = ['operator', 'launcher', 'node-agent'];

export class KeyVirtImageError extends Error {
  override readonly name = 'KeyVirtImageError';
}

export interface ChartImage {
  readonly registry: string;
  readonly repository: string;
  readonly tag: string;
  readonly pullPolicy: 'Never';
}

export interface KeyVirtImages {
  readonly archives: readonly ImageArchive[];
  /** The chart's image values: the content-hash tags, never pulled (no registry here). */
  readonly values: Readonly<Record<'operator' | 'launcher' | 'nodeAgent', ChartImage>>;
}

const DockerManifest = z.array(z.object({ RepoTags: z.array(z.string()).optional() })).min(1);

/** The content-hash reference a docker archive carries (its `repository:<16 hex>` tag). */
function archiveRef(file: string, repository: string): string | undefined {
  const manifest = DockerManifest.parse(JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8', maxBuffer: 1024 * 1024 })));
  return manifest.flatMap((m) => m.RepoTags ?? []).find((t) => t.startsWith(`${repository}:`) && /:[0-9a-f]{16}$/.test(t));
}

function splitRef(ref: string): { repository: string; tag: string } {
  const colon = ref.lastIndexOf(':');
  if (colon <= ref.lastIndexOf('/')) throw new KeyVirtImageError(`image reference without a tag: ${ref}`);
  return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

/** Builds (or finds) the three images and their archives; minutes the first time, seconds after. */
export function keyvirtImages(): KeyVirtImages {
  let out: string;
  try {
    out = execFileSync('bash', [buildScript, ...IMAGES], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new KeyVirtImageError(`hack/images/build.sh failed: ${typeof stderr === 'string' ? stderr.trim().split('\n').slice(-5).join(' | ') : String(err)}`, { cause: err });
  }
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [name, ref] = line.trim().split(/\s+/);
    if (name !== undefined && ref !== undefined) refs.set(name, ref);
  }
  fs.mkdirSync(archiveDir, { recursive: true });
  const archives: ImageArchive[] = [];
  const values: Partial<Record<'operator' | 'launcher' | 'nodeAgent', ChartImage>> = {};
  for (const image of IMAGES) {
    const built = refs.get(image);
    if (built === undefined) throw new KeyVirtImageError(`hack/images/build.sh printed no reference for ${image}: ${out.trim()}`);
    const { repository } = splitRef(built);
    let file = path.join(archiveDir, `keyvirt-${image}-${splitRef(built).tag}.tar`);
    if (!fs.existsSync(file) || archiveRef(file, repository) !== built) {
      const tmp = path.join(archiveDir, `keyvirt-${image}.tmp-${process.pid}`);
      execFileSync('bash', [buildScript, 'export', image, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
      const carried = archiveRef(tmp, repository);
      if (carried === undefined) throw new KeyVirtImageError(`the ${image} archive carries no ${repository}:<content hash> tag`);
      file = path.join(archiveDir, `keyvirt-${image}-${splitRef(carried).tag}.tar`);
      fs.renameSync(tmp, file);
    }
    const ref = archiveRef(file, repository) ?? built;
    const { tag } = splitRef(ref);
    const sha256 = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    archives.push({ ref, file, sha256 });
    const slash = repository.indexOf('/');
    values[image === 'node-agent' ? 'nodeAgent' : image] = { registry: repository.slice(0, slash), repository: repository.slice(slash + 1), tag, pullPolicy: 'Never' };
  }
  const { operator, launcher, nodeAgent } = values;
  if (operator === undefined || launcher === undefined || nodeAgent === undefined) throw new KeyVirtImageError('an image is missing');
  return { archives, values: { operator, launcher, nodeAgent } };
}

// KeyVirt's own images for the real nodes: built (or found by content hash) by
// hack/images/build.sh, exported once per content hash as archives that containerd's
// `ctr images import` accepts, and named by their content-hash tags, so a pod names
// exactly the image this tree built.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
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
  readonly repository: string;
  readonly tag: string;
  readonly pullPolicy: 'Never';
}

export interface KeyVirtImages {
  readonly archives: readonly ImageArchive[];
  /** The chart's image values: the content-hash tags, never pulled (no registry here). */
  readonly values: Readonly<Record<'operator' | 'launcher' | 'nodeAgent', ChartImage>>;
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
    const ref = refs.get(image);
    if (ref === undefined) throw new KeyVirtImageError(`hack/images/build.sh printed no reference for ${image}: ${out.trim()}`);
    const { repository, tag } = splitRef(ref);
    const file = path.join(archiveDir, `keyvirt-${image}-${tag}.tar`);
    if (!fs.existsSync(file)) {
      const tmp = `${file}.tmp-${process.pid}`;
      execFileSync('bash', [buildScript, 'export', image, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
      fs.renameSync(tmp, file);
    }
    const sha256 = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    archives.push({ ref, file, sha256 });
    values[image === 'node-agent' ? 'nodeAgent' : image] = { repository, tag, pullPolicy: 'Never' };
  }
  const { operator, launcher, nodeAgent } = values;
  if (operator === undefined || launcher === undefined || nodeAgent === undefined) throw new KeyVirtImageError('an image is missing');
  return { archives, values: { operator, launcher, nodeAgent } };
}

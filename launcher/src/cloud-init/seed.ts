// Builds the cloud-init NoCloud seed: an ISO 9660 image labelled `cidata` holding
// meta-data (instance-id, local-hostname), user-data and network-config, made with
// genisoimage. cloud-init finds it by its label on any block device.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export class SeedBuildError extends Error {
  override name = 'SeedBuildError';
}

export interface NoCloudSeed {
  /** Changes whenever the guest should run cloud-init's per-instance modules again. */
  instanceId: string;
  hostname: string;
  userData?: string;
  networkData?: string;
}

/** The NoCloud meta-data document (YAML; both values are quoted as JSON strings, a YAML subset). */
export function metaDataDocument(seed: NoCloudSeed): string {
  return `instance-id: ${JSON.stringify(seed.instanceId)}\nlocal-hostname: ${JSON.stringify(seed.hostname)}\n`;
}

/** Where `buildNoCloudSeed` puts the image under `workDir`. */
export function noCloudSeedPath(workDir: string): string {
  return path.join(workDir, 'seed.iso');
}

/** Writes the seed files under `workDir` and builds `<workDir>/seed.iso`; resolves with the image path. */
export async function buildNoCloudSeed(seed: NoCloudSeed, workDir: string, genisoimage = 'genisoimage'): Promise<string> {
  const filesDir = path.join(workDir, 'cidata');
  await rm(filesDir, { recursive: true, force: true });
  await mkdir(filesDir, { recursive: true, mode: 0o700 });
  const files = ['meta-data', 'user-data'];
  await writeFile(path.join(filesDir, 'meta-data'), metaDataDocument(seed), { mode: 0o600 });
  await writeFile(path.join(filesDir, 'user-data'), seed.userData ?? '', { mode: 0o600 });
  if (seed.networkData !== undefined) {
    await writeFile(path.join(filesDir, 'network-config'), seed.networkData, { mode: 0o600 });
    files.push('network-config');
  }
  const image = noCloudSeedPath(workDir);
  try {
    await execFileAsync(genisoimage, ['-quiet', '-output', image, '-volid', 'cidata', '-joliet', '-rock', ...files], { cwd: filesDir });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new SeedBuildError(`genisoimage failed: ${(err as Error).message} ${stderr}`.trim(), { cause: err });
  }
  return image;
}

// The backing images of the local cluster's sample StorageDomain: the test guest's
// bootable disk as `keyvirt-test-guest` (built when missing, about a minute) and the
// Debian 12 guest image as `debian-12` (when hack/guest/debian/build.sh has built it:
// its first build downloads a few hundred MiB of packages). A template is replaced only
// when its build changed, by rename, so a running VM keeps the file it opened; disks
// created over an older build keep reading the old content until they are recreated.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';

export const TEST_GUEST_IMAGE = 'keyvirt-test-guest';
export const DEBIAN_IMAGE = 'debian-12';

export class GuestImageInstallError extends Error {
  override readonly name = 'GuestImageInstallError';
}

const testGuestManifest = z.object({ hash: z.string().min(1), disk: z.string().min(1) });
const debianManifest = z.object({ hash: z.string().min(1), image: z.string().min(1) });

function buildDir(script: string, args: readonly string[]): string | undefined {
  const out = execFileSync('bash', [script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').at(-1) || undefined;
}

function readManifest<T>(dir: string, schema: z.ZodType<T>): T {
  const file = path.join(dir, 'manifest.json');
  const parsed = schema.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (!parsed.success) throw new GuestImageInstallError(`${file}: ${parsed.error.message}`);
  return parsed.data;
}

/** Copies `source` to `templates/<name>` unless the stamp says this build is there already; true when it wrote. */
function installTemplate(templates: string, name: string, source: string, hash: string): boolean {
  const target = path.join(templates, name);
  const stamp = path.join(templates, `.${name}.build`);
  if (fs.existsSync(target) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8').trim() === hash) return false;
  const tmp = path.join(templates, `.${name}.tmp`);
  fs.copyFileSync(source, tmp, fs.constants.COPYFILE_FICLONE);
  fs.renameSync(tmp, target);
  fs.writeFileSync(stamp, `${hash}\n`);
  return true;
}

/** Puts the guest images into `<domainPath>/templates`. */
export function installGuestImages(root: string, domainPath: string, log: Logger): void {
  const templates = path.join(domainPath, 'templates');
  fs.mkdirSync(templates, { recursive: true });
  const guestDir = buildDir(path.join(root, 'hack/guest/build.sh'), []);
  if (guestDir === undefined) throw new GuestImageInstallError('hack/guest/build.sh printed no build directory');
  const guest = readManifest(guestDir, testGuestManifest);
  if (installTemplate(templates, TEST_GUEST_IMAGE, path.join(guestDir, guest.disk), guest.hash)) {
    log.info({ image: TEST_GUEST_IMAGE, build: guest.hash, templates }, 'backing image installed');
  }
  const debianDir = buildDir(path.join(root, 'hack/guest/debian/build.sh'), ['--if-built']);
  if (debianDir === undefined) {
    log.info({ image: DEBIAN_IMAGE, build: 'hack/guest/debian/build.sh' }, 'backing image not built yet');
    return;
  }
  const debian = readManifest(debianDir, debianManifest);
  if (installTemplate(templates, DEBIAN_IMAGE, path.join(debianDir, debian.image), debian.hash)) {
    log.info({ image: DEBIAN_IMAGE, build: debian.hash, templates }, 'backing image installed');
  }
}

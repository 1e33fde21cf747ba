// The takeover disk fence (ADR 0063). Before QEMU starts after a takeover (the previous
// holder never released), each writable disk is copied to a new inode in its own
// directory (`cp --reflink=auto --sparse=always`: O(1) on XFS/btrfs, a real copy on
// ext4), the copy is fsynced, renamed over the disk's path, and the directory fsynced.
// A previous QEMU that was frozen and resumes keeps its descriptor on the old, now
// orphaned inode: whatever it still writes never reaches the disk this launcher uses.
// The disk's directory may be the pod's, reached by a node agent through a held
// descriptor (ADR 0136): the disk must be a regular file (never a link to follow), `cp`
// does not dereference it, and the copy's name is random, so nothing planted in the
// directory can redirect the copy. node:crypto loads on first use (ADR 0122).
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { lstat, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const run = promisify(execFile);

export class DiskFenceError extends Error {
  override name = 'DiskFenceError';
}

async function fsyncPath(target: string, flags: number): Promise<void> {
  const handle = await open(target, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Moves one disk to a new inode at the same path. */
export async function fenceDisk(disk: string, logger: Logger): Promise<void> {
  const dir = path.dirname(disk);
  const copy = path.join(dir, `.${path.basename(disk)}.fence-${process.getBuiltinModule('node:crypto').randomBytes(8).toString('hex')}`);
  const started = performance.now();
  try {
    if (!(await lstat(disk)).isFile()) throw new DiskFenceError('it is not a regular file');
    await run('cp', ['--reflink=auto', '--sparse=always', '--no-dereference', '--preserve=mode,timestamps', '--', disk, copy]);
    await fsyncPath(copy, constants.O_RDONLY | constants.O_NOFOLLOW);
    await rename(copy, disk);
    await fsyncPath(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    await rm(copy, { force: true }).catch(() => undefined);
    throw new DiskFenceError(`could not fence disk ${disk}: ${(err as Error).message}`, { cause: err });
  }
  logger.info({ disk, ms: Math.round(performance.now() - started) }, 'disk moved to a new inode');
}

/** Fences every disk in turn; the first failure stops the launch. */
export async function fenceDisks(disks: readonly string[], logger: Logger): Promise<void> {
  const log = logger.child({ component: 'disk-fence' });
  for (const disk of disks) await fenceDisk(disk, log);
}

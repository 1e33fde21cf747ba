// The takeover disk fence (ADR 0063). Before QEMU starts after a takeover (the previous
// holder never released), each writable disk is copied to a new inode in its own
// directory (`cp --reflink=auto --sparse=always`: O(1) on XFS/btrfs, a real copy on
// ext4), the copy is fsynced, renamed over the disk's path, and the directory fsynced.
// A previous QEMU that was frozen and resumes keeps its descriptor on the old, now
// orphaned inode: whatever it still writes never reaches the disk this launcher uses.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
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
  const copy = path.join(dir, `.${path.basename(disk)}.fence-${process.pid}-${Date.now()}`);
  const started = performance.now();
  try {
    await run('cp', ['--reflink=auto', '--sparse=always', '--preserve=mode,timestamps', '--', disk, copy]);
    await fsyncPath(copy, constants.O_RDONLY);
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

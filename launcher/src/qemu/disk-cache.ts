// Which host cache mode a disk image can use: `none` (O_DIRECT + native AIO, no host page
// cache, safe for live migration on any shared storage) when the file system supports
// O_DIRECT, `writeback` otherwise (tmpfs and some FUSE file systems). See ADR 0042.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { DiskCacheMode } from './command-line.ts';

/** Resolves `none` when `path` opens with O_DIRECT, `writeback` when the file system refuses it; `flags` are added (O_NOFOLLOW). */
export async function probeDiskCacheMode(path: string, flags = 0): Promise<DiskCacheMode> {
  try {
    const fh = await open(path, constants.O_RDONLY | constants.O_DIRECT | flags);
    await fh.close();
    return 'none';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return 'writeback';
    throw err;
  }
}

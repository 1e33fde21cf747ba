// Lease file I/O (ADR 0063). Every read and every write opens the file afresh, so a
// storage mount that went away shows up at the next renewal instead of hiding behind
// an open descriptor. Writes go through O_DSYNC + pwrite at offset 0 + fdatasync: the
// renewal counts only once the block is on stable storage. Everything runs on libuv's
// threadpool: a hung call never blocks the event loop, so the self-fence timer keeps
// running while a renewal hangs. The file is never opened through a symbolic link: a
// node agent reaches it through the pod's mount (ADR 0136), where the pod could plant one.
import { constants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { decodeLeaseBlock, encodeLeaseRecord, LEASE_BLOCK_SIZE } from './record.ts';
import type { LeaseObservation, LeaseRecord } from './record.ts';

export class LeaseIoError extends Error {
  override name = 'LeaseIoError';
}

/** Reads the lease block; a missing file is `empty`. */
export async function readLease(file: string): Promise<LeaseObservation> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return decodeLeaseBlock(Buffer.alloc(0));
    throw err;
  }
  try {
    const buffer = Buffer.alloc(LEASE_BLOCK_SIZE);
    const { bytesRead } = await handle.read(buffer, 0, LEASE_BLOCK_SIZE, 0);
    return decodeLeaseBlock(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/** A holder's write was dropped because its fence deadline passed while the file was being opened. */
export class LeaseWriteAbandonedError extends Error {
  override name = 'LeaseWriteAbandonedError';
}

/**
 * Writes the record as the file's first block and waits until it is on stable storage.
 * `mayWrite` is asked again right before the block goes out (after the open, which may
 * have hung or been frozen): a holder past its fence deadline must not write.
 */
export async function writeLease(file: string, record: LeaseRecord, mayWrite: () => boolean = () => true): Promise<void> {
  const block = encodeLeaseRecord(record);
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_DSYNC | constants.O_NOFOLLOW, 0o600);
  try {
    if (!mayWrite()) throw new LeaseWriteAbandonedError('lease write abandoned: the fence deadline passed');
    const { bytesWritten } = await handle.write(block, 0, block.length, 0);
    if (bytesWritten !== block.length) throw new LeaseIoError(`short lease write: ${bytesWritten} of ${block.length} bytes`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Creates the lease file's directory when it is missing (a launcher outside a pod). */
export async function ensureLeaseDirectory(file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
}

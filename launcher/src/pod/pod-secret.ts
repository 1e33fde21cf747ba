// One file of a Secret volume in another pod, read from outside it through the pod's held
// directory (pod-root.ts, ADR 0132). The kubelet's atomic writer lays a Secret out as
// links: `<key> -> ..data/<key>` and `..data -> ..<timestamp>`, a real directory holding
// the files. Following those links by path under `/proc/<pid>/root` would be unsafe (a
// link naming an absolute path resolves against the node's root), so the two links are
// read, must be exactly the kubelet's own shapes, and are walked by hand: the timestamped
// directory opened without following a link, the file in it with O_NOFOLLOW. Runtimes
// that write plain files (the node simulator) are read directly. Only regular files are
// read, up to a bound; anything else is refused.
import { constants } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import type { PodDirectory } from './pod-root.ts';

export class PodSecretError extends Error {
  override name = 'PodSecretError';
}

/** The kubelet's link to the current timestamped directory of a Secret volume. */
const DATA_LINK = '..data';
/** What `..data` names: one component, `..` and the writer's timestamp (`..2026_12_01_17_44_36.123456789`). */
const DATA_DIR = /^\.\.[0-9][0-9_.]*$/;
/** O_NONBLOCK: a FIFO put in place of the file neither blocks the open nor is read; O_NOCTTY: a terminal is not taken. */
const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** The error's errno code, looking through a PodRootError to its cause. */
function errnoCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e instanceof Error; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
    e = e.cause;
  }
  return undefined;
}

function why(err: unknown): string {
  const code = errnoCode(err);
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'ELOOP') return 'is a symbolic link';
  if (code === 'ENOTDIR') return 'is not a directory';
  return `cannot be read (${code ?? (err instanceof Error ? err.message : String(err))})`;
}

function kind(stat: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isSymbolicLink()) return 'a symbolic link';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  return 'a device or other special file';
}

/**
 * Reads the regular file `name` of `dir`, at most `maxBytes`: lstat first so a FIFO or
 * device is never opened, then O_NOFOLLOW and fstat on the handle (the entry may have
 * been swapped in between). `label` names the secret in messages.
 */
async function readRegularFile(dir: PodDirectory, name: string, maxBytes: number, label: string): Promise<Buffer> {
  const stat = await lstat(dir.entry(name)).catch((err: unknown) => {
    throw new PodSecretError(`${label} ${why(err)}`, { cause: err });
  });
  if (!stat.isFile()) throw new PodSecretError(`${label} is ${kind(stat)}, not a regular file`);
  const handle = await dir.openFile(name, READ_FLAGS).catch((err: unknown) => {
    throw new PodSecretError(`${label} ${why(err)}`, { cause: err });
  });
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw new PodSecretError(`${label} is ${kind(opened)}, not a regular file`);
    if (opened.size > maxBytes) throw new PodSecretError(`${label} is larger than ${String(maxBytes)} bytes (${String(opened.size)})`);
    // One byte more than allowed: a file that grew since fstat is still caught.
    const buffer = Buffer.alloc(maxBytes + 1);
    let total = 0;
    while (total < buffer.length) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    if (total > maxBytes) throw new PodSecretError(`${label} is larger than ${String(maxBytes)} bytes`);
    return buffer.subarray(0, total);
  } finally {
    await handle.close();
  }
}

/** The target of the link `name` in `dir` (the link itself read, nothing followed). */
async function readLink(dir: PodDirectory, name: string, label: string): Promise<string> {
  try {
    return await readlink(dir.entry(name));
  } catch (err) {
    const code = errnoCode(err);
    throw new PodSecretError(`${label} ${code === 'EINVAL' ? 'is not a symbolic link' : why(err)}`, { cause: err });
  }
}

/** The content of `name` in the pod's secret volume `dir`, at most `maxBytes`; follows only the kubelet's own links. */
export async function readPodSecretFile(dir: PodDirectory, name: string, maxBytes: number): Promise<Buffer> {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative integer, not ${String(maxBytes)}`);
  let podPath: string;
  try {
    podPath = dir.inPod(name);
  } catch (err) {
    throw new PodSecretError(`${JSON.stringify(name)} is not a single file name in the pod's ${dir.podPath}`, { cause: err });
  }
  const label = `the pod's secret ${podPath}`;
  const stat = await lstat(dir.entry(name)).catch((err: unknown) => {
    throw new PodSecretError(`${label} ${why(err)}`, { cause: err });
  });
  if (!stat.isSymbolicLink()) return readRegularFile(dir, name, maxBytes, label);

  const expected = `${DATA_LINK}/${name}`;
  const target = await readLink(dir, name, label);
  if (target !== expected) {
    throw new PodSecretError(`${label} is a symbolic link to ${JSON.stringify(target)}, not to ${JSON.stringify(expected)}`);
  }
  const dataLabel = `${label}: ${dir.inPod(DATA_LINK)}`;
  const dataDir = await readLink(dir, DATA_LINK, dataLabel);
  if (!DATA_DIR.test(dataDir)) {
    throw new PodSecretError(`${dataLabel} is a symbolic link to ${JSON.stringify(dataDir)}, not to a timestamped directory beside it`);
  }
  const data = await dir.directory(dataDir).catch((err: unknown) => {
    // PodRootError names the directory and what stands in its way (a link, not a directory).
    throw new PodSecretError(`${label}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  });
  try {
    return await readRegularFile(data, name, maxBytes, `${label} (${data.inPod(name)})`);
  } finally {
    await data.close();
  }
}

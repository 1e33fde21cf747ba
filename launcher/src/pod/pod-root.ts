// A pod's file system as a process outside the pod reaches it (ADR 0132): through
// `/proc/<pid>/root`, resolving the pod's paths one component at a time from a held
// directory descriptor, never following a symbolic link and never `..`. A link under
// `/proc/<pid>/root` that names an absolute path would otherwise resolve against the
// *caller's* root: a hostile QEMU that swaps its state directory for `-> /etc` would have
// a privileged node agent write the node's files. Each step opens
// `/proc/self/fd/<parent>/<name>` with O_NOFOLLOW: the magic link is the open directory
// itself (no path is resolved again), and a link as `<name>` fails with ELOOP.
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

export class PodRootError extends Error {
  override name = 'PodRootError';
}

/** The components of an absolute pod path; refuses `..`, `.`, empty and NUL-bearing ones. */
export function podPathComponents(podPath: string): string[] {
  if (!podPath.startsWith('/')) throw new PodRootError(`${JSON.stringify(podPath)} is not an absolute path`);
  if (podPath.includes('\0')) throw new PodRootError('a pod path holds a NUL byte');
  const parts = podPath.split('/').filter((p) => p !== '');
  for (const part of parts) {
    if (part === '..' || part === '.') throw new PodRootError(`${JSON.stringify(podPath)}: "${part}" is not allowed in a pod path`);
  }
  return parts;
}

function assertName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new PodRootError(`${JSON.stringify(name)} is not a single file name`);
  }
}

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** A directory of the pod, held open: its entries are reached through the descriptor, not by path. */
export class PodDirectory {
  readonly #handle: FileHandle;
  /** The pod's path of this directory (for messages and for the pod's own processes). */
  readonly podPath: string;

  constructor(handle: FileHandle, podPath: string) {
    this.#handle = handle;
    this.podPath = podPath;
  }

  /**
   * A path naming `name` in this directory, for calls that take a path. The directory is
   * the held one whatever happens to its path; `name` itself must still be opened with
   * O_NOFOLLOW (openFile) or be created by the call (mkdir, bind, rename's target).
   */
  entry(name: string): string {
    assertName(name);
    return `${this.descriptorPath}/${name}`;
  }

  /**
   * `/proc/<this pid>/fd/<fd>`: a directory path for code that joins single names to it
   * and opens them without following a link (pod-host.ts), and for the programs it runs
   * (genisoimage writes the seed there); valid while this stays open.
   */
  get descriptorPath(): string {
    return `/proc/${String(process.pid)}/fd/${String(this.#handle.fd)}`;
  }

  /** The pod's path of `name` in this directory (what QEMU in the pod opens). */
  inPod(name: string): string {
    assertName(name);
    return path.posix.join(this.podPath, name);
  }

  /** Opens `name` without following a link; `flags` are added to O_NOFOLLOW. */
  async openFile(name: string, flags: number, mode = 0o600): Promise<FileHandle> {
    try {
      return await open(this.entry(name), flags | constants.O_NOFOLLOW, mode);
    } catch (err) {
      throw await podError(err, this.entry(name), this.inPod(name));
    }
  }

  /** A subdirectory, held open (no link followed). */
  async directory(name: string): Promise<PodDirectory> {
    try {
      return new PodDirectory(await open(this.entry(name), DIR_FLAGS), this.inPod(name));
    } catch (err) {
      throw await podError(err, this.entry(name), this.inPod(name));
    }
  }

  /** This directory again, as a descriptor of its own. */
  async reopen(): Promise<PodDirectory> {
    return new PodDirectory(await open(this.descriptorPath, constants.O_RDONLY | constants.O_DIRECTORY), this.podPath);
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

/** Names what stood in the way (O_DIRECTORY|O_NOFOLLOW on a link fails ENOTDIR, not ELOOP). */
async function podError(err: unknown, entry: string, podPath: string): Promise<PodRootError> {
  const code = (err as NodeJS.ErrnoException).code;
  const link = (code === 'ELOOP' || code === 'ENOTDIR') && (await lstat(entry).then((s) => s.isSymbolicLink(), () => false));
  const why = link ? 'is a symbolic link' : code === 'ENOTDIR' ? 'is not a directory' : code === 'ENOENT' ? 'does not exist' : `cannot be opened (${code ?? String(err)})`;
  return new PodRootError(`the pod's ${podPath} ${why}`, { cause: err });
}

/** The root of a pod's file system as seen from outside (`/proc/<pid>/root`), held open. */
export class PodRoot {
  readonly #root: PodDirectory;

  private constructor(root: PodDirectory) {
    this.#root = root;
  }

  /** Opens the pod's root through `rootPath` (the magic link is meant to be followed here). */
  static async open(rootPath: string): Promise<PodRoot> {
    try {
      return new PodRoot(new PodDirectory(await open(rootPath, constants.O_RDONLY | constants.O_DIRECTORY), '/'));
    } catch (err) {
      throw new PodRootError(`cannot open the pod's root ${rootPath}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The pod's directory `podPath`, walked from the root with no link followed; the caller closes it. */
  async directory(podPath: string): Promise<PodDirectory> {
    const parts = podPathComponents(podPath);
    let current = await this.#root.reopen();
    try {
      for (const part of parts) {
        const next = await current.directory(part);
        await current.close();
        current = next;
      }
    } catch (err) {
      await current.close();
      throw err;
    }
    return current;
  }

  async close(): Promise<void> {
    await this.#root.close();
  }
}

// A simulated node's own FUSE view of the shared storage (Debian bindfs, mirroring the
// shared directory at a mount point of its own): the node's pods reach the shared
// storage through it, so that one node's storage can hang (bindfs stopped: I/O waits)
// or fail (bindfs gone: I/O errors) while the other nodes and the host keep reading the
// same files directly. Teardown never touches a view's files: it aborts the FUSE
// connection first (every waiting request fails at once), then detaches the mount.
// Views are mounted under /run, outside every tree a container's root binds recursively
// (the repository, /usr, /etc, /opt): a view that hangs must never be carried into the
// pods of other nodes, whose start would then hang remounting it read-only.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { daemonPid, isAlive, processState, startDaemon } from './daemons.ts';
import type { ClusterLayout } from './layout.ts';

export class StorageViewError extends Error {
  override readonly name = 'StorageViewError';
}

export type StorageViewState = 'serving' | 'hung' | 'failed' | 'absent';

/** One directory per cluster (several clones of the repository may run clusters). */
function viewsDir(layout: ClusterLayout): string {
  return path.join('/run/keyvirt-storage-views', createHash('sha256').update(layout.root).digest('hex').slice(0, 12));
}

/** Where node `node`'s view is mounted. */
export function storageViewMountPoint(layout: ClusterLayout, node: string): string {
  return path.join(viewsDir(layout), node);
}

function daemonName(node: string): string {
  return `storage-view-${node}`;
}

interface MountEntry {
  readonly mountPoint: string;
  /** The device minor: the FUSE connection's number under /sys/fs/fuse/connections. */
  readonly minor: number;
  readonly fsType: string;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mounts of this mount namespace (reading mountinfo never touches a mounted file system). */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    const device = fields[2];
    const mountPoint = fields[4];
    const fsType = fields[dash + 1];
    if (dash < 0 || device === undefined || mountPoint === undefined || fsType === undefined) continue;
    out.push({ mountPoint: unescapeMountPath(mountPoint), minor: Number(device.split(':')[1]), fsType });
  }
  return out;
}

function mountsUnder(dir: string): MountEntry[] {
  return parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'))
    .filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + path.sep));
}

function viewMounts(layout: ClusterLayout, node: string): MountEntry[] {
  return mountsUnder(storageViewMountPoint(layout, node)).filter((m) => m.mountPoint === storageViewMountPoint(layout, node));
}

function bindfsPid(layout: ClusterLayout, node: string): number | undefined {
  return daemonPid(layout, daemonName(node), storageViewMountPoint(layout, node));
}

/** serving (bindfs answering), hung (stopped), failed (mounted, bindfs gone) or absent (no view). */
export function storageViewState(layout: ClusterLayout, node: string): StorageViewState {
  const pid = bindfsPid(layout, node);
  if (pid !== undefined) return processState(pid) === 'T' ? 'hung' : 'serving';
  return viewMounts(layout, node).length > 0 ? 'failed' : 'absent';
}

/** Aborts the FUSE connection and lazily detaches each mount: nothing waits on it afterwards. */
function detach(mounts: readonly MountEntry[]): void {
  for (const m of mounts) {
    if (m.fsType.startsWith('fuse')) {
      try {
        fs.writeFileSync(`/sys/fs/fuse/connections/${m.minor}/abort`, '1');
      } catch {
        // the connection went with its daemon
      }
    }
    execFileSync('/usr/bin/umount', ['-l', m.mountPoint], { stdio: 'ignore', timeout: 10_000 });
  }
}

/** Mounts (or finds serving) node `node`'s view of `root`; returns its mount point. */
export async function mountStorageView(layout: ClusterLayout, node: string, root: string): Promise<string> {
  const mountPoint = storageViewMountPoint(layout, node);
  if (!path.isAbsolute(root) || !fs.statSync(root).isDirectory()) throw new StorageViewError(`storage root ${root} must be an existing absolute directory`);
  const state = storageViewState(layout, node);
  if (state === 'serving') return mountPoint;
  if (state !== 'absent') await unmountStorageView(layout, node);
  fs.mkdirSync(mountPoint, { recursive: true });
  const pid = startDaemon(layout, {
    name: daemonName(node),
    command: '/usr/bin/bindfs',
    marker: mountPoint,
    // Foreground, so that the pid is bindfs itself. Single-threaded: lock forwarding would need
    // bindfs' multithreaded mode (unsafe when it creates files as the caller), so byte-range
    // locks taken through the view are seen only by the view's users (ADR 0065).
    args: ['-f', '-o', `fsname=keyvirt-view-${node}`, root, mountPoint],
  });
  const deadline = Date.now() + 10_000;
  while (viewMounts(layout, node).length === 0) {
    if (!isAlive(pid)) throw new StorageViewError(`bindfs for node ${node} exited before mounting (log: ${path.join(layout.logDir, `${daemonName(node)}.log`)})`);
    if (Date.now() > deadline) throw new StorageViewError(`bindfs for node ${node} did not mount ${mountPoint} within 10 s`);
    await sleep(50);
  }
  return mountPoint;
}

/** Fault: stop bindfs (SIGSTOP): every I/O of the node's pods on the shared storage waits. Resolves once it is stopped. */
export async function hangStorageView(layout: ClusterLayout, node: string): Promise<void> {
  const pid = bindfsPid(layout, node);
  if (pid === undefined) throw new StorageViewError(`node ${node} has no serving storage view`);
  process.kill(pid, 'SIGSTOP');
  while (processState(pid) !== 'T') await sleep(10);
}

/** Fault: kill bindfs: the kernel aborts the connection and every I/O through the view fails (ENOTCONN). */
export async function failStorageView(layout: ClusterLayout, node: string): Promise<void> {
  const pid = bindfsPid(layout, node);
  if (pid === undefined) throw new StorageViewError(`node ${node} has no serving storage view`);
  process.kill(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(20);
}

/**
 * Ends a storage fault: a hung view resumes (SIGCONT) and its waiting I/O completes; a
 * failed one is detached and mounted afresh for new pods (pods that held files through
 * the failed mount keep failing, as after a lost NFS mount).
 */
export async function restoreStorageView(layout: ClusterLayout, node: string, root: string): Promise<void> {
  const pid = bindfsPid(layout, node);
  if (pid !== undefined) {
    process.kill(pid, 'SIGCONT');
    return;
  }
  await mountStorageView(layout, node, root);
}

/** Kills the node's bindfs (stopped or not), aborts its connection and detaches the mount; never waits on a hung view. */
export async function unmountStorageView(layout: ClusterLayout, node: string): Promise<void> {
  const pid = bindfsPid(layout, node);
  if (pid !== undefined) {
    process.kill(pid, 'SIGKILL');
    while (isAlive(pid)) await sleep(20);
  }
  detach(viewMounts(layout, node));
  try {
    fs.rmdirSync(storageViewMountPoint(layout, node));
  } catch {
    // absent
  }
}

/** Detaches every view left mounted (cluster teardown): a stray hung mount never outlives the cluster. */
export async function unmountAllStorageViews(layout: ClusterLayout): Promise<void> {
  const dir = viewsDir(layout);
  const nodes = new Set(mountsUnder(dir).filter((m) => path.dirname(m.mountPoint) === dir).map((m) => path.basename(m.mountPoint)));
  for (const node of nodes) await unmountStorageView(layout, node);
  detach(mountsUnder(dir).filter((m) => m.mountPoint !== dir));
}

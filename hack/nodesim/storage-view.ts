// A node's own view of the shared storage: on a node started with a storage view,
// every hostPath (and hostPath PersistentVolume) under the shared storage root is
// reached through that node's FUSE mirror of the root instead of the root itself,
// so that a fault hook can hang or fail this one node's storage while every other
// node, and the host, keep reaching the same files directly.
import path from 'node:path';

export interface StorageView {
  /** The shared directory (as every other node sees it). */
  readonly root: string;
  /** Where this node's mirror of `root` is mounted. */
  readonly mountPoint: string;
}

export class StorageViewError extends Error {
  override readonly name = 'StorageViewError';
}

/** Checks that both paths are absolute, normalised and distinct, and that neither contains the other. */
export function checkStorageView(view: StorageView): StorageView {
  for (const [field, p] of [['root', view.root], ['mountPoint', view.mountPoint]] as const) {
    if (!path.isAbsolute(p) || path.normalize(p) !== p || p === '/' || p.endsWith('/')) {
      throw new StorageViewError(`storage view ${field} ${p} must be an absolute, normalised directory other than /`);
    }
  }
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(b + path.sep);
  if (inside(view.root, view.mountPoint) || inside(view.mountPoint, view.root)) {
    throw new StorageViewError(`storage view mountPoint ${view.mountPoint} and root ${view.root} must not contain each other`);
  }
  return view;
}

/** The node path of host path `p`: through the view when it lies under the storage root, unchanged otherwise. */
export function throughStorageView(view: StorageView | undefined, p: string): string {
  if (view === undefined) return p;
  const normal = path.normalize(p);
  if (normal === view.root) return view.mountPoint;
  if (!normal.startsWith(view.root + path.sep)) return p;
  return path.join(view.mountPoint, normal.slice(view.root.length + 1));
}

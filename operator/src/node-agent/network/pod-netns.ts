// Finds a pod's network namespace on this node from the host's /proc: a process whose
// cgroup path names the pod's UID (the kubelet's `pod<uid>` directory, with dashes or,
// under systemd, underscores; the node simulator's `/<uid>/`). The namespace is then
// `<proc>/<pid>/ns/net`. Every candidate's namespace must be the same one: two
// different namespaces for one pod UID is refused rather than guessed.
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';

export class PodNetnsError extends Error {
  override name = 'PodNetnsError';
}

const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when a /proc/<pid>/cgroup text places the process in pod `uid`'s cgroup. */
export function cgroupNamesPod(cgroupText: string, uid: string): boolean {
  const underscored = uid.replaceAll('-', '_');
  return cgroupText.split('\n').some((line) => {
    const cgroupPath = line.split(':').slice(2).join(':');
    return cgroupPath.split('/').some((part) => part === uid || part === `pod${uid}` || part === `pod${underscored}` || part === `kubepods-pod${underscored}.slice` || part.endsWith(`-pod${underscored}.slice`));
  });
}

export interface PodNetns {
  pid: number;
  /** `<proc>/<pid>/ns/net`. */
  path: string;
}

/** The network namespace of pod `uid`, or undefined while none of its processes runs. */
export async function findPodNetns(procRoot: string, uid: string): Promise<PodNetns | undefined> {
  if (!UID.test(uid)) throw new PodNetnsError(`pod uid ${uid} is not a UID`);
  const entries = await readdir(procRoot);
  const found: { pid: number; ns: string }[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(path.join(procRoot, entry, 'cgroup'), 'utf8').catch(() => '');
    if (!cgroupNamesPod(text, uid)) continue;
    const ns = await readlink(path.join(procRoot, entry, 'ns', 'net')).catch(() => undefined);
    if (ns !== undefined) found.push({ pid: Number(entry), ns });
  }
  if (found.length === 0) return undefined;
  const namespaces = new Set(found.map((f) => f.ns));
  if (namespaces.size > 1) throw new PodNetnsError(`pod ${uid} has processes in ${namespaces.size} network namespaces`);
  const [first] = found.sort((a, b) => a.pid - b.pid);
  if (first === undefined) return undefined;
  return { pid: first.pid, path: path.join(procRoot, String(first.pid), 'ns', 'net') };
}

// The PID 1 of a held launcher pod (ADR 0134), found in the node's procfs: a process in
// the pod's cgroup (pod-netns.ts reads the kubelet's, systemd's and the node simulator's
// cgroup paths) that is PID 1 of its own PID namespace (the last NSpid field) and runs
// the pod script. The pod's other processes (QEMU, which a hostile guest may control)
// are never PID 1 of their namespace; the pod's sandbox (pause) runs another program.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { POD_SCRIPT } from '../../vm/held-launcher.ts';
import { cgroupNamesPod } from '../network/pod-netns.ts';

const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when a /proc/<pid>/status text says the process is PID 1 of its innermost PID namespace. */
export function isNamespaceInit(statusText: string): boolean {
  const line = statusText.split('\n').find((l) => l.startsWith('NSpid:'));
  if (line === undefined) return false;
  const ids = line.slice('NSpid:'.length).trim().split(/\s+/);
  return ids.length > 1 && ids.at(-1) === '1';
}

/** True when a /proc/<pid>/cmdline (NUL-separated) runs the pod script under bash. */
export function runsPodScript(cmdline: string): boolean {
  const argv = cmdline.split('\0').filter((a) => a !== '');
  return argv.length === 2 && path.posix.basename(argv[0] ?? '') === 'bash' && argv[1] === POD_SCRIPT;
}

/** The pod's PID 1 (in `procRoot`'s numbering), or undefined while it has not started. */
export async function findHeldPodInit(procRoot: string, podUid: string): Promise<number | undefined> {
  return (await findHeldPodInits(procRoot, [podUid])).get(podUid);
}

/**
 * The PID 1 of each of `podUids` that has started, from one walk of `procRoot`. A pod
 * with two candidates has none: one container runs the script, so the other imitates it.
 */
export async function findHeldPodInits(procRoot: string, podUids: readonly string[]): Promise<Map<string, number>> {
  const wanted = podUids.filter((uid) => UID.test(uid));
  const found = new Map<string, number[]>();
  if (wanted.length === 0) return new Map();
  for (const entry of await readdir(procRoot)) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = path.join(procRoot, entry);
    const cgroup = await readFile(path.join(dir, 'cgroup'), 'utf8').catch(() => '');
    const uid = wanted.find((u) => cgroupNamesPod(cgroup, u));
    if (uid === undefined) continue;
    const [status, cmdline] = await Promise.all([
      readFile(path.join(dir, 'status'), 'utf8').catch(() => ''),
      readFile(path.join(dir, 'cmdline'), 'utf8').catch(() => ''),
    ]);
    if (isNamespaceInit(status) && runsPodScript(cmdline)) found.set(uid, [...(found.get(uid) ?? []), Number(entry)]);
  }
  const out = new Map<string, number>();
  for (const [uid, pids] of found) if (pids.length === 1 && pids[0] !== undefined) out.set(uid, pids[0]);
  return out;
}

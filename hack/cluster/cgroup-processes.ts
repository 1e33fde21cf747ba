// The processes of a cgroup v1 tree, read from each group's cgroup.procs, and their end
// by SIGKILL: a real node's containers (real-node-host.ts) and a simulated node that
// loses power (nodes.ts).
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive } from './daemons.ts';

/** A group and every group below it, deepest first (none once the group is gone). */
export function cgroupTree(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) if (e.isDirectory()) out.push(...cgroupTree(path.join(dir, e.name)));
  out.push(dir);
  return out;
}

/** The processes of `dirs` (a group removed meanwhile has none). */
export function pidsIn(dirs: readonly string[]): number[] {
  const pids: number[] = [];
  for (const dir of dirs) {
    try {
      for (const line of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number(line);
        if (Number.isInteger(pid) && pid > 0) pids.push(pid);
      }
    } catch {
      // removed meanwhile
    }
  }
  return pids;
}

/** SIGKILLs `pids` and waits until none is alive, at most 10 s. */
export async function killAll(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 10_000;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
}

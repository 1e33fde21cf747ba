// Who is using a cluster that tests started: one file per live test process under
// .keyvirt/run/users; when the last one leaves, a detached idle-stopper tears the
// cluster down after a quiet period (unless `npm start` has taken it over).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isAlive } from './daemons.ts';
import type { ClusterLayout } from './layout.ts';

function usersDir(layout: ClusterLayout): string {
  return path.join(layout.runDir, 'users');
}

export function addUser(layout: ClusterLayout, pid: number = process.pid): void {
  fs.mkdirSync(usersDir(layout), { recursive: true });
  fs.writeFileSync(path.join(usersDir(layout), `${pid}`), '');
}

export function removeUser(layout: ClusterLayout, pid: number = process.pid): void {
  fs.rmSync(path.join(usersDir(layout), `${pid}`), { force: true });
}

/** Pids of live users (files of dead processes are removed). */
export function liveUsers(layout: ClusterLayout): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(usersDir(layout));
  } catch {
    return [];
  }
  const live: number[] = [];
  for (const entry of entries) {
    const pid = Number(entry);
    if (Number.isInteger(pid) && isAlive(pid)) live.push(pid);
    else fs.rmSync(path.join(usersDir(layout), entry), { force: true });
  }
  return live;
}

/** Starts the detached idle-stopper (it exits at once if the cluster is in use again). */
export function scheduleIdleStop(layout: ClusterLayout, idleMs: number): void {
  fs.mkdirSync(layout.logDir, { recursive: true });
  const log = fs.openSync(path.join(layout.logDir, 'idle-stop.log'), 'a');
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'idle-stop.ts'), `${idleMs}`], {
    detached: true, stdio: ['ignore', log, log], cwd: layout.root,
  });
  child.unref();
  fs.closeSync(log);
}

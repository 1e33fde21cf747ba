// A cross-process lock (a file created exclusively, holding the owner's pid) so
// that concurrent test processes bring the shared cluster up or down one at a time.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive } from './daemons.ts';
import type { ClusterLayout } from './layout.ts';

export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
}

/** The pid holding the lock, 'stale' when its holder is dead, or 0 while it is being written. */
function lockHolder(lockPath: string): number | 'stale' {
  let text: string;
  let ageMs: number;
  try {
    text = fs.readFileSync(lockPath, 'utf8').trim();
    ageMs = Date.now() - fs.statSync(lockPath).mtimeMs;
  } catch {
    return 0;
  }
  const pid = Number(text);
  if (text === '' || !Number.isInteger(pid) || pid <= 0) return ageMs > 5000 ? 'stale' : 0;
  return isAlive(pid) ? pid : 'stale';
}

export async function withClusterLock<T>(layout: ClusterLayout, fn: () => Promise<T>, timeoutMs = 60 * 60_000): Promise<T> {
  fs.mkdirSync(layout.stateDir, { recursive: true });
  const lockPath = path.join(layout.stateDir, 'cluster.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.writeFileSync(lockPath, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch {
      const holder = lockHolder(lockPath);
      if (holder === 'stale') {
        fs.rmSync(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new LockTimeoutError(`cluster lock held by pid ${holder} for too long`);
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockPath, { force: true });
  }
}

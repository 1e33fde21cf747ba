// Small waits for the launcher suites: a promise with a time limit, and polling until a
// check has a value.
import { setTimeout as sleep } from 'node:timers/promises';

/** `promise`, or 'timeout' after `ms` (the timer is cleared either way). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  const ac = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, 'timeout' as const, { signal: ac.signal })]);
  } finally {
    ac.abort();
  }
}

/** Polls `check` every `intervalMs` until it returns a value; throws naming `what` after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${String(timeoutMs)} ms`);
    await sleep(intervalMs);
  }
}

// How a long-running KeyVirt process ends after a clean stop (docs/adr/0140): it sets the
// exit code and lets the event loop drain, so Node tears down its threads and its
// connections in order. `process.exit()` there would run the C library's exit handlers
// while sockets of the API connection pool were still closing and Node's own threads still
// ran, which aborts the process now and then (SIGABRT instead of 0). Should something
// still hold the loop open after the grace period, the process says what it is and exits
// with the same code anyway: a stop never hangs.
import type { Logger } from 'pino';

const DRAIN_GRACE_MS = 5000;

/**
 * Ends the process with `code` once nothing keeps its event loop alive; after `graceMs`
 * an unreferenced timer names what still does and forces the exit.
 */
export function exitWhenDrained(code: number, log: Pick<Logger, 'warn'>, graceMs = DRAIN_GRACE_MS): void {
  process.exitCode = code;
  setTimeout(() => {
    log.warn({ activeResources: countResources(process.getActiveResourcesInfo()), graceMs }, 'the event loop did not drain after the stop; exiting anyway');
    process.exit(code);
  }, graceMs).unref();
}

/** Resource names with their counts, e.g. { TCPSocketWrap: 2, Timeout: 1 }. */
export function countResources(names: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

// How a long-running KeyVirt process ends after a clean stop (docs/adr/0140): it sets the
// exit code and lets the event loop drain, so Node tears down its threads and its
// connections in order. `process.exit()` there would run the C library's exit handlers
// while sockets of the API connection pool were still closing and Node's own threads still
// ran, which aborts the process now and then (SIGABRT instead of 0). Should something
// still hold the loop open after the grace period, the process says what it is and exits
// with the same code anyway: a stop never hangs.
import type { Logger } from 'pino';

/** What the process ends with: its loop drained within `graceMs`, or forced after it. */
export interface DrainedExitOptions {
  readonly log: Pick<Logger, 'warn'>;
  readonly graceMs?: number;
  /** For tests: what forcing the exit does (default process.exit). */
  readonly exit?: (code: number) => void;
  /** For tests: the resources still open (default process.getActiveResourcesInfo). */
  readonly activeResources?: () => string[];
}

export const DEFAULT_DRAIN_GRACE_MS = 5000;

/**
 * Ends the process with `code` once nothing keeps its event loop alive; returns the
 * (unreferenced) timer that forces the exit after the grace period.
 */
export function exitWhenDrained(code: number, options: DrainedExitOptions): NodeJS.Timeout {
  process.exitCode = code;
  const exit = options.exit ?? ((c: number): void => process.exit(c));
  const active = options.activeResources ?? ((): string[] => process.getActiveResourcesInfo());
  const graceMs = options.graceMs ?? DEFAULT_DRAIN_GRACE_MS;
  const timer = setTimeout(() => {
    options.log.warn({ activeResources: countResources(active()), graceMs }, 'the event loop did not drain after the stop; exiting anyway');
    exit(code);
  }, graceMs);
  timer.unref();
  return timer;
}

/** Resource names with their counts, e.g. { TCPSocketWrap: 2, Timeout: 1 }. */
export function countResources(names: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

// The HA restart budget of a VM: at most `maxRestarts` restarts in a sliding window,
// counted from the times the HA controller keeps in the VM's keyvirt.io/ha-restarts
// annotation (a JSON list of ms-since-epoch times, bounded). Pure; the annotation is
// written by the HA controller only, before the replacement it counts is created.
import { z } from 'zod';

export interface RestartBudget {
  /** Most restarts allowed inside the window (0 disables HA restarts). */
  readonly maxRestarts: number;
  readonly windowMs: number;
}

export const DEFAULT_RESTART_BUDGET: RestartBudget = { maxRestarts: 3, windowMs: 10 * 60_000 };

/** The annotation never holds more entries than this, whatever the budget. */
export const MAX_RECORDED_RESTARTS = 32;

const restartsSchema = z.array(z.number().int().nonnegative()).max(1000);

export interface BudgetState {
  /** Restart times inside the window, oldest first. */
  readonly recent: readonly number[];
  readonly exhausted: boolean;
  /** When the oldest restart leaves the window (a restart is allowed again), if exhausted. */
  readonly retryAt: number | undefined;
  /** The annotation could not be read: treated as no restarts recorded. */
  readonly unreadable: boolean;
}

/** The restart times recorded in the annotation; an unreadable value counts as none. */
export function parseRestarts(raw: string | undefined): { times: number[]; unreadable: boolean } {
  if (raw === undefined || raw === '') return { times: [], unreadable: false };
  try {
    const parsed = restartsSchema.safeParse(JSON.parse(raw));
    return parsed.success ? { times: [...parsed.data].sort((a, b) => a - b), unreadable: false } : { times: [], unreadable: true };
  } catch {
    return { times: [], unreadable: true };
  }
}

export function budgetState(raw: string | undefined, now: number, budget: RestartBudget): BudgetState {
  const { times, unreadable } = parseRestarts(raw);
  // A time in the future (a clock step back) still counts: it never widens the budget.
  const recent = times.filter((t) => t > now - budget.windowMs);
  const exhausted = recent.length >= budget.maxRestarts;
  const oldest = recent[recent.length - budget.maxRestarts];
  return { recent, exhausted, retryAt: exhausted && oldest !== undefined ? oldest + budget.windowMs : undefined, unreadable };
}

/** The annotation value after one more restart at `now`: only times inside the window, at most MAX_RECORDED_RESTARTS. */
export function recordRestart(raw: string | undefined, now: number, budget: RestartBudget): string {
  const recent = budgetState(raw, now, budget).recent;
  return JSON.stringify([...recent, now].slice(-MAX_RECORDED_RESTARTS));
}

// Which VM needing an HA restart goes first: the highest spec.highAvailability.priority,
// then the longest waiting (the earliest detection), then the key. Pure. A VM waits
// while a VM ahead of it still needs its replacement created, so that when capacity is
// short the most important VMs take it first.

export interface RestartCandidate {
  readonly key: string;
  readonly priority: number;
  /** When the failure was first seen (ms); ties broken by key. */
  readonly detectedAt: number;
}

export function restartOrder(candidates: readonly RestartCandidate[]): RestartCandidate[] {
  return [...candidates].sort((a, b) => b.priority - a.priority || a.detectedAt - b.detectedAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The candidates that must go before `key` (empty when it may go now or is not a candidate). */
export function aheadOf(key: string, candidates: readonly RestartCandidate[]): RestartCandidate[] {
  const order = restartOrder(candidates);
  const index = order.findIndex((c) => c.key === key);
  return index < 0 ? [] : order.slice(0, index);
}

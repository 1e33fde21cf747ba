// The lease's pure decisions (ADR 0063), on a monotonic clock in milliseconds handed
// in by the caller: what an acquirer does with what it read, whether a holder still
// holds, when a holder must self-fence. No I/O, no timers: tested by tables.
import { LEASE_CLOCK_RATE_BOUND, LEASE_KILL_LATENCY_MS } from '../api/config.ts';
import type { LeaseObservation, LeaseRecord } from './record.ts';

export interface LeaseTiming {
  /** R */
  readonly renewIntervalMs: number;
  /** F */
  readonly fenceTimeoutMs: number;
  /** L */
  readonly acquireTimeoutMs: number;
}

/** What an acquirer watches: the content last seen and since when (its own monotonic clock). */
export interface LeaseWatch {
  readonly key: string;
  readonly sinceMs: number;
  readonly holder?: string;
  readonly generation?: number;
}

export type AcquireStep =
  | { action: 'claim'; generation: number; takeover: boolean; why: 'free' | 'released' | 'expired' | 'nodeFenced' }
  | { action: 'wait'; watch: LeaseWatch; silentMs: number };

export interface AcquireInput {
  readonly observation: LeaseObservation;
  readonly self: string;
  readonly nowMs: number;
  readonly watch: LeaseWatch | undefined;
  readonly timing: LeaseTiming;
  /** The previous holder's node is known fenced: no wait for expiry (the claim is still verified). */
  readonly nodeFenced: boolean;
  /** The highest generation this acquirer has seen, for a lease whose block is unreadable. */
  readonly highestGeneration: number;
}

/**
 * Free (no file, an empty block, or released to nobody else) → claim. Held, or
 * unreadable → watch: any change of the content restarts the wait; unchanged for L on
 * this host's monotonic clock → expired, claimed as a takeover. A lease held under this
 * launcher's own identity (a restarted launcher of the same pod) is treated like any
 * other holder: its QEMU is not known to be gone.
 */
export function decideAcquire(input: AcquireInput): AcquireStep {
  const { observation: obs, self, nowMs, timing } = input;
  if (obs.kind === 'empty') return { action: 'claim', generation: input.highestGeneration + 1, takeover: false, why: 'free' };
  const record = obs.kind === 'record' ? obs.record : undefined;
  const generation = Math.max(input.highestGeneration, record?.generation ?? 0) + 1;
  if (record?.state === 'released' && (record.successor === undefined || record.successor === self)) {
    return { action: 'claim', generation, takeover: false, why: 'released' };
  }
  const watch: LeaseWatch =
    input.watch?.key === obs.key ? input.watch : { key: obs.key, sinceMs: nowMs, holder: record?.holder, generation: record?.generation };
  const silentMs = Math.max(0, nowMs - watch.sinceMs);
  if (input.nodeFenced) return { action: 'claim', generation, takeover: true, why: 'nodeFenced' };
  if (silentMs >= expiryAfterMs(record, timing)) return { action: 'claim', generation, takeover: true, why: 'expired' };
  return { action: 'wait', watch, silentMs };
}

/** The longest L an acquirer takes from a record (the schema's largest): a record cannot hold a lease for ever. */
export const MAX_RECORD_ACQUIRE_TIMEOUT_MS = 600_000;

/**
 * How long a lease must stay unchanged before it is expired: this acquirer's L, or the
 * L the record itself states when longer (the parting renewal of a node agent that
 * stops, ADR 0138), up to `MAX_RECORD_ACQUIRE_TIMEOUT_MS`. Unreadable content: this L.
 */
export function expiryAfterMs(record: LeaseRecord | undefined, timing: LeaseTiming): number {
  return Math.max(timing.acquireTimeoutMs, Math.min(record?.acquireTimeoutMs ?? 0, MAX_RECORD_ACQUIRE_TIMEOUT_MS));
}

/**
 * The timing a parting renewal writes (ADR 0138): F = `fenceMs`, and an L that keeps
 * the rule every lease obeys (L/(1+ρ) > F/(1−ρ) + K, ADR 0063) with the margin the
 * holder's own timing has (L − F).
 */
export function partingTiming(timing: LeaseTiming, fenceMs: number): LeaseTiming {
  const rho = LEASE_CLOCK_RATE_BOUND;
  return {
    renewIntervalMs: timing.renewIntervalMs,
    fenceTimeoutMs: fenceMs,
    acquireTimeoutMs: Math.ceil((fenceMs * (1 + rho)) / (1 - rho)) + Math.max(timing.acquireTimeoutMs - timing.fenceTimeoutMs, Math.ceil(LEASE_KILL_LATENCY_MS * (1 + rho)) + 1),
  };
}

/** Only the timing fields of `timing` (a lease configuration has more). */
function timingOf(timing: LeaseTiming): LeaseTiming {
  return { renewIntervalMs: timing.renewIntervalMs, fenceTimeoutMs: timing.fenceTimeoutMs, acquireTimeoutMs: timing.acquireTimeoutMs };
}

/** A record's timing fields set to `timing` (a holder writes its own, whatever the last writer wrote). */
export function withTiming(record: LeaseRecord, timing: LeaseTiming): LeaseRecord {
  return { ...record, ...timingOf(timing) };
}

/** The record a claim writes. */
export function claimRecord(self: string, node: string, generation: number, timing: LeaseTiming): LeaseRecord {
  return { version: 1, holder: self, node, generation, counter: 0, state: 'held', ...timingOf(timing) };
}

export type HoldCheck = { holds: true; record: LeaseRecord } | { holds: false; why: string };

/** A holder still holds only if the lease names it, with its generation, and is held. */
export function checkHold(obs: LeaseObservation, self: string, generation: number): HoldCheck {
  if (obs.kind === 'empty') return { holds: false, why: 'the lease is empty' };
  if (obs.kind === 'invalid') return { holds: false, why: `the lease is unreadable (${obs.why})` };
  const r = obs.record;
  if (r.holder !== self || r.generation !== generation) return { holds: false, why: `the lease is held by ${r.holder} generation ${r.generation}` };
  if (r.state !== 'held') return { holds: false, why: 'the lease was released' };
  return { holds: true, record: r };
}

/**
 * A claim is acquired when the read-back 2·R later still names this claimant and
 * generation, and the claim's write completed within R of its start (a write that
 * hung may land after another claimant verified: it must not count).
 */
export function claimVerified(obs: LeaseObservation, self: string, generation: number, writeTookMs: number, timing: LeaseTiming): boolean {
  return writeTookMs < timing.renewIntervalMs && checkHold(obs, self, generation).holds;
}

/**
 * The self-fence rule: QEMU must die once the last renewal that succeeded started F
 * ago or more. A renewal that completes only after that does not count.
 */
export function fenceDue(nowMs: number, lastRenewalStartMs: number, fenceTimeoutMs: number): boolean {
  return nowMs - lastRenewalStartMs >= fenceTimeoutMs;
}

/** The record a holder writes to hand the lease to a migration target. */
export function handoverRecord(current: LeaseRecord, successor: string, node: string): LeaseRecord {
  return { ...current, holder: successor, node, generation: current.generation + 1, counter: 0, state: 'held', successor };
}

/** What a migration target makes of the lease while it waits for the hand-over. */
export type HandoverCheck = { outcome: 'mine'; record: LeaseRecord } | { outcome: 'wait' } | { outcome: 'lost'; why: string };

export function checkHandover(obs: LeaseObservation, self: string, sourceHolder: string | undefined, sourceGeneration: number | undefined): HandoverCheck {
  if (obs.kind === 'record' && obs.record.holder === self && obs.record.state === 'held') return { outcome: 'mine', record: obs.record };
  if (obs.kind === 'record' && obs.record.holder === sourceHolder && obs.record.generation === sourceGeneration && obs.record.state === 'held') {
    return { outcome: 'wait' };
  }
  if (obs.kind === 'invalid') return { outcome: 'wait' };
  const who = obs.kind === 'record' ? `${obs.record.holder} generation ${obs.record.generation} (${obs.record.state})` : 'nobody';
  return { outcome: 'lost', why: `the lease passed to ${who} instead of this migration target` };
}

// The acquirer (ADR 0063): every launcher of a highly available VM runs it before QEMU
// starts (a migration target excepted). It reads the lease every R/2; a free lease is
// claimed; a held one is watched until its content has not changed for L on this host's
// monotonic clock, then claimed as a takeover. A claim is verified by a fresh read 2·R
// later; a claim that lost a race goes back to watching.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { LeaseStatus } from '../api/status.ts';
import { claimRecord, claimVerified, decideAcquire } from './decisions.ts';
import type { LeaseTiming, LeaseWatch } from './decisions.ts';
import { readLease, writeLease } from './lease-file.ts';
import type { LeaseRecord } from './record.ts';

export interface AcquireOptions {
  readonly file: string;
  readonly self: string;
  readonly node: string;
  readonly timing: LeaseTiming;
  readonly nodeFenced: boolean;
  readonly logger: Logger;
  /** Reports progress (the launcher status shows it). */
  readonly onStatus: (status: LeaseStatus) => void;
  readonly signal?: AbortSignal;
  readonly now?: () => number;
}

export interface AcquiredLease {
  readonly record: LeaseRecord;
  /** Monotonic start of the claim's write: the holder's first fence deadline counts from it. */
  readonly claimedAtMs: number;
  /** The previous holder never released: its disks must be fenced before QEMU starts. */
  readonly takeover: boolean;
}

export async function acquireLease(options: AcquireOptions): Promise<AcquiredLease> {
  const { file, self, timing, logger } = options;
  const log = logger.child({ component: 'lease-acquirer' });
  const now = options.now ?? ((): number => performance.now());
  let watch: LeaseWatch | undefined;
  let highestGeneration = 0;
  let nodeFenced = options.nodeFenced;
  let lastState: string | undefined;
  options.onStatus({ state: 'Acquiring' });
  for (;;) {
    options.signal?.throwIfAborted();
    let observation;
    const readStartMs = now();
    try {
      observation = await readLease(file);
    } catch (err) {
      log.warn({ err }, 'lease read failed');
      await sleep(timing.renewIntervalMs / 2, undefined, { signal: options.signal });
      continue;
    }
    if (observation.kind === 'record') highestGeneration = Math.max(highestGeneration, observation.record.generation);
    const step = decideAcquire({ observation, self, nowMs: now(), watch, timing, nodeFenced, highestGeneration });
    if (step.action === 'wait') {
      if (watch?.key !== step.watch.key) log.info({ holder: step.watch.holder, generation: step.watch.generation }, 'lease held; waiting for it to expire');
      watch = step.watch;
      options.onStatus({ state: 'WaitingForExpiry', holder: step.watch.holder, generation: step.watch.generation, holderSilentMs: Math.round(step.silentMs) });
      lastState = 'WaitingForExpiry';
      await sleep(timing.renewIntervalMs / 2, undefined, { signal: options.signal });
      continue;
    }
    if (lastState !== 'Acquiring') options.onStatus({ state: 'Acquiring', takeover: step.takeover });
    lastState = 'Acquiring';
    const record = claimRecord(self, options.node, step.generation, timing);
    log.info({ generation: step.generation, why: step.why, takeover: step.takeover }, 'claiming the lease');
    const claimedAtMs = now();
    try {
      // A claim decided on a read older than R (this process was frozen or the write's
      // open hung) is dropped: the lease may have changed since.
      await writeLease(file, record, () => now() - readStartMs < timing.renewIntervalMs);
    } catch (err) {
      log.warn({ err }, 'lease claim failed');
      watch = undefined;
      continue;
    }
    const writeTookMs = now() - claimedAtMs;
    await sleep(2 * timing.renewIntervalMs, undefined, { signal: options.signal });
    let readBack;
    try {
      readBack = await readLease(file);
    } catch (err) {
      log.warn({ err }, 'lease read-back failed');
      watch = undefined;
      continue;
    }
    if (claimVerified(readBack, self, step.generation, writeTookMs, timing)) {
      log.info({ generation: step.generation, takeover: step.takeover }, 'lease acquired');
      return { record, claimedAtMs, takeover: step.takeover };
    }
    log.warn({ generation: step.generation, writeTookMs }, 'lease claim lost; watching again');
    highestGeneration = Math.max(highestGeneration, step.generation);
    nodeFenced = false;
    watch = undefined;
  }
}

// The holder of a lease (ADR 0063): renews every R (fresh read → still mine with my
// generation → write counter+1), and self-fences — `onFence` kills QEMU with SIGKILL —
// when a read shows another holder (LeaseLost) or when the last renewal that succeeded
// started F ago on the monotonic clock (LeaseExpired). The fence check runs on its own
// 100 ms timer and after every renewal step; lease I/O runs on the threadpool, so a
// hung read or write never delays it. Once fenced, the holder never writes again.
// A holder whose process stops while QEMU runs on (a node agent's update) writes one
// parting renewal with a longer F and L, which its pod's deadline follows (ADR 0138).
import type { Logger } from 'pino';
import { checkHold, fenceDue, handoverRecord, withTiming } from './decisions.ts';
import type { LeaseTiming } from './decisions.ts';
import { readLease, writeLease } from './lease-file.ts';
import type { LeaseRecord } from './record.ts';

export type FenceReason = 'LeaseLost' | 'LeaseExpired';

export interface LeaseHolderOptions {
  readonly file: string;
  readonly self: string;
  readonly node: string;
  /** The record this holder acquired (its generation is the one it keeps). */
  readonly acquired: LeaseRecord;
  /** Monotonic start of the write that acquired the lease: the first fence deadline counts from it. */
  readonly acquiredAtMs: number;
  /** F until the first renewal: the one the last write stated (a resumed lease, ADR 0138); default: `timing`'s. */
  readonly acquiredFenceMs?: number;
  readonly timing: LeaseTiming;
  readonly logger: Logger;
  /** Kills QEMU at once; called at most once. */
  readonly onFence: (reason: FenceReason, message: string) => void;
  /** Monotonic milliseconds; never the wall clock. */
  readonly now?: () => number;
  readonly fenceCheckIntervalMs?: number;
  /**
   * Called at the start and after each renewal that succeeded, with the monotonic start
   * of the last one and the F it stated: the fence deadline moves on from them (a pod
   * holding QEMU keeps its own).
   */
  readonly onRenewed?: (lastRenewalStartMs: number, fenceMs: number) => void;
}

export class LeaseHandoverError extends Error {
  override name = 'LeaseHandoverError';
}

export class LeaseHolder {
  readonly #o: LeaseHolderOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #record: LeaseRecord;
  #lastRenewalStartMs: number;
  /** F counted from the last renewal: the one it wrote. */
  #fenceMs: number;
  #fenced: { reason: FenceReason; message: string } | undefined;
  #stopped = false;
  #inFlight: Promise<void> | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #fenceTimer: NodeJS.Timeout | undefined;
  #renewals = 0;

  constructor(options: LeaseHolderOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'lease-holder' });
    this.#now = options.now ?? ((): number => performance.now());
    this.#record = options.acquired;
    this.#lastRenewalStartMs = options.acquiredAtMs;
    this.#fenceMs = options.acquiredFenceMs ?? options.timing.fenceTimeoutMs;
  }

  get generation(): number {
    return this.#record.generation;
  }

  get record(): LeaseRecord {
    return this.#record;
  }

  get fenced(): { reason: FenceReason; message: string } | undefined {
    return this.#fenced;
  }

  get renewals(): number {
    return this.#renewals;
  }

  /** Monotonic start of the last renewal that succeeded (at first, of the acquiring write): the holder fences F after it. */
  get lastRenewalStartMs(): number {
    return this.#lastRenewalStartMs;
  }

  /** Starts renewing and the fence timer; the first renewal after R, or at once when `renewNow` (a resumed lease). */
  start(renewNow = false): void {
    this.#fenceTimer = setInterval(() => this.#checkDeadline(), this.#o.fenceCheckIntervalMs ?? 100);
    this.#o.onRenewed?.(this.#lastRenewalStartMs, this.#fenceMs);
    this.#scheduleRenewal(renewNow ? 0 : this.#o.timing.renewIntervalMs);
    this.#checkDeadline();
  }

  /** Stops renewing (the fence timer too) without waiting for a renewal in flight (it may hang). */
  halt(): void {
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    clearInterval(this.#fenceTimer);
  }

  /** Stops renewing (the fence timer too); waits for a renewal in flight. The lease stays as written. */
  async stop(): Promise<void> {
    this.halt();
    await this.#inFlight;
  }

  /** After QEMU has exited: marks the lease released, unless it was fenced or is no longer ours. */
  async release(): Promise<boolean> {
    await this.stop();
    if (this.#fenced !== undefined || !this.#withinDeadline()) return false;
    const check = checkHold(await readLease(this.#o.file), this.#o.self, this.#record.generation);
    if (!check.holds) {
      this.#log.warn({ why: check.why }, 'lease not released: no longer ours');
      return false;
    }
    await writeLease(this.#o.file, { ...check.record, counter: check.record.counter + 1, state: 'released' }, () => this.#withinDeadline());
    this.#log.info({ generation: this.#record.generation }, 'lease released');
    return true;
  }

  /**
   * Hands the lease to a migration target once this QEMU has stopped for good (the
   * migration completed): renewals stop, then {holder: successor, generation+1}. The
   * fence timer runs until that write is on disk.
   */
  async handOver(successor: string, successorNode: string): Promise<LeaseRecord> {
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    await this.#inFlight;
    if (this.#fenced !== undefined) throw new LeaseHandoverError(`the lease was lost before the hand-over: ${this.#fenced.message}`);
    const check = checkHold(await readLease(this.#o.file), this.#o.self, this.#record.generation);
    if (!check.holds) throw new LeaseHandoverError(`cannot hand the lease over: ${check.why}`);
    const next = handoverRecord(check.record, successor, successorNode);
    if (this.#checkDeadline()) throw new LeaseHandoverError('the lease expired before the hand-over');
    await writeLease(this.#o.file, next, () => !this.#checkDeadline());
    clearInterval(this.#fenceTimer);
    this.#log.info({ successor, generation: next.generation }, 'lease handed over to the migration target');
    return next;
  }

  /**
   * The last renewal of a holder whose process stops while QEMU runs on (a node agent
   * that is updated or restarted, ADR 0138): renewals stop, and one more writes `timing`
   * — a longer F, and the L that goes with it, which acquirers honour. The fence timer
   * runs on with that F (the pod's deadline, moved by `onRenewed`, comes first). False
   * when nothing was written (lost, expired, or the write failed): the fence stands.
   */
  async part(timing: LeaseTiming): Promise<boolean> {
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    await this.#inFlight;
    const parted = await this.#renew(timing, true);
    if (parted) this.#log.info({ generation: this.#record.generation, fenceTimeoutMs: timing.fenceTimeoutMs, acquireTimeoutMs: timing.acquireTimeoutMs }, 'parting lease renewal written');
    return parted;
  }

  #scheduleRenewal(delayMs = this.#o.timing.renewIntervalMs): void {
    if (this.#stopped || this.#fenced !== undefined) return;
    this.#renewTimer = setTimeout(() => {
      this.#inFlight = this.#renew(this.#o.timing, false).then((renewed) => {
        if (renewed) this.#renewals++;
      }).finally(() => {
        this.#inFlight = undefined;
        this.#scheduleRenewal();
      });
    }, delayMs);
  }

  /**
   * One renewal stating `timing`; true once written. F then counts from its start, as
   * long as it stated. A stop while reading drops an ordinary renewal; the parting one
   * is the stop's own.
   */
  async #renew(timing: LeaseTiming, parting: boolean): Promise<boolean> {
    const startMs = this.#now();
    if (this.#checkDeadline()) return false;
    try {
      const check = checkHold(await readLease(this.#o.file), this.#o.self, this.#record.generation);
      if (this.#checkDeadline() || (this.#stopped && !parting)) return false;
      if (!check.holds) {
        this.#fence('LeaseLost', check.why);
        return false;
      }
      const next = { ...withTiming(check.record, timing), counter: check.record.counter + 1, node: this.#o.node };
      await writeLease(this.#o.file, next, () => !this.#checkDeadline());
      if (this.#checkDeadline()) return false;
      this.#record = next;
      this.#lastRenewalStartMs = startMs;
      this.#fenceMs = next.fenceTimeoutMs;
      this.#o.onRenewed?.(startMs, this.#fenceMs);
      return true;
    } catch (err) {
      this.#log.warn({ err }, parting ? 'parting lease renewal failed' : 'lease renewal failed');
      this.#checkDeadline();
      return false;
    }
  }

  /** The self-fence rule (ADR 0063): due once the last renewal that succeeded started F ago or more. */
  #due(now: number): boolean {
    return fenceDue(now, this.#lastRenewalStartMs, this.#fenceMs);
  }

  /** Whether a write may still go out: the fence deadline has not passed (no fence raised from here). */
  #withinDeadline(): boolean {
    return !this.#due(this.#now());
  }

  /** True once fenced (now or before). */
  #checkDeadline(): boolean {
    if (this.#fenced !== undefined) return true;
    const now = this.#now();
    if (!this.#due(now)) return false;
    this.#fence('LeaseExpired', `no lease renewal succeeded for ${Math.round(now - this.#lastRenewalStartMs)} ms (fence timeout ${this.#fenceMs} ms)`);
    return true;
  }

  #fence(reason: FenceReason, message: string): void {
    if (this.#fenced !== undefined) return;
    this.#fenced = { reason, message };
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    clearInterval(this.#fenceTimer);
    this.#log.error({ reason, why: message }, 'self-fencing: killing QEMU');
    this.#o.onFence(reason, message);
  }
}

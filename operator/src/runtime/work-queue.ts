// A work queue of object keys with client-go's semantics: a key added while it waits is
// merged into one entry; a key added while a worker processes it is queued again once
// that worker is done (so one key never has two workers); delayed adds keep the earliest
// deadline; failures back off exponentially per key until forgotten.
import type { Clock, TimerHandle } from './clock.ts';

/** Per-key exponential backoff: base · 2^(failures-1), capped. */
export class ExponentialBackoff {
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #failures = new Map<string, number>();

  constructor(baseMs: number, maxMs: number) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  /** Records one more failure of `key` and returns how long to wait before retrying. */
  next(key: string): number {
    const n = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, n);
    const exp = Math.min(n - 1, 40);
    return Math.min(this.#baseMs * 2 ** exp, this.#maxMs);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }
}

/**
 * First in, first out, O(1) both ways: `Array.prototype.shift` moves every element once
 * an array is large, and a burst queues thousands of keys.
 */
class Fifo {
  #items: string[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(key: string): void {
    this.#items.push(key);
  }

  shift(): string | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const key = this.#items[this.#head];
    this.#head += 1;
    // Drop the consumed prefix once it is the larger part: amortized O(1).
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    } else if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    }
    return key;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

export interface WorkQueueOptions {
  clock: Clock;
  backoff?: ExponentialBackoff;
}

interface Waiting {
  at: number;
  timer: TimerHandle;
}

export class WorkQueue {
  readonly #clock: Clock;
  readonly #backoff: ExponentialBackoff;
  readonly #queue = new Fifo();
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #waiting = new Map<string, Waiting>();
  #getters: ((key: string | undefined) => void)[] = [];
  #idle: (() => void)[] = [];
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.#clock = opts.clock;
    this.#backoff = opts.backoff ?? new ExponentialBackoff(500, 5 * 60_000);
  }

  /** Keys ready to be processed (not counting delayed ones or those in process). */
  get depth(): number {
    return this.#queue.length;
  }

  /** Keys waiting for a delayed add. */
  get delayed(): number {
    return this.#waiting.size;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  /** Adds `key` after `delayMs`; an earlier pending deadline for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.#clock.now() + delayMs;
    const existing = this.#waiting.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      existing.timer.cancel();
    }
    const timer = this.#clock.schedule(delayMs, () => {
      this.#waiting.delete(key);
      this.add(key);
    });
    this.#waiting.set(key, { at, timer });
  }

  /** Adds `key` after its next backoff step; returns the delay used. */
  addRateLimited(key: string): number {
    const delay = this.#backoff.next(key);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the failure history of `key` (after a successful reconcile). */
  forget(key: string): void {
    this.#backoff.forget(key);
  }

  numRequeues(key: string): number {
    return this.#backoff.failures(key);
  }

  /**
   * The next key to process, or undefined once the queue shuts down — even with keys
   * still queued: a controller stops when its manager loses the leader lease, and a
   * drained backlog (thousands of keys in a burst) would be written by a replica that
   * no longer leads, for minutes. The next term's fresh controllers are handed every
   * cached object again (ADR 0117).
   */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#take(key);
      return Promise.resolve(key);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** Marks `key` processed; if it was added meanwhile it is queued again. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#push(key);
    if (this.#processing.size === 0) for (const f of this.#idle.splice(0)) f();
  }

  /** Stops handing out keys (queued ones are dropped); resolves when every key in process is done. */
  shutDown(): Promise<void> {
    this.#shuttingDown = true;
    this.#queue.clear();
    this.#dirty.clear();
    for (const w of this.#waiting.values()) w.timer.cancel();
    this.#waiting.clear();
    for (const g of this.#getters.splice(0)) g(undefined);
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #push(key: string): void {
    const getter = this.#getters.shift();
    if (getter !== undefined) {
      this.#take(key);
      getter(key);
      return;
    }
    this.#queue.push(key);
  }

  #take(key: string): void {
    this.#dirty.delete(key);
    this.#processing.add(key);
  }
}

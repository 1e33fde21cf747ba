// A client-side token bucket (client-go's flowcontrol: `qps` tokens a second, up to
// `burst` saved) with two lanes: a waiting status write takes the next token before any
// waiting ordinary request, so a burst of creations never holds the status users see.
// Within a lane, first come first served. Time is an injected `Clock`.
import type { Clock, TimerHandle } from './clock.ts';

export type RequestLane = 'status' | 'ordinary';

export interface RateLimit {
  /** Tokens added per second. */
  readonly qps: number;
  /** Most tokens saved up (and the first burst's size). */
  readonly burst: number;
}

/** The request was abandoned (its signal aborted) while it waited for a token. */
export class RateLimitAbortedError extends Error {
  override readonly name = 'RateLimitAbortedError';
}

interface Waiter {
  resolve(): void;
  detach(): void;
}

export class TokenBucket {
  readonly #limit: RateLimit;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;
  readonly #lanes: Record<RequestLane, Waiter[]> = { status: [], ordinary: [] };
  #timer: TimerHandle | undefined;

  constructor(limit: RateLimit, clock: Clock) {
    if (!(limit.qps > 0) || !(limit.burst >= 1)) throw new RangeError('rate limit: qps must be > 0 and burst ≥ 1');
    this.#limit = limit;
    this.#clock = clock;
    this.#tokens = limit.burst;
    this.#last = clock.now();
  }

  /** Requests waiting for a token. */
  get waiting(): number {
    return this.#lanes.status.length + this.#lanes.ordinary.length;
  }

  /** Resolves when the request may go; rejects with RateLimitAbortedError if `signal` aborts first. */
  acquire(lane: RequestLane, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new RateLimitAbortedError('request aborted before it was sent'));
    this.#refill();
    if (this.waiting === 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const queue = this.#lanes[lane];
      const onAbort = (): void => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        reject(new RateLimitAbortedError('request aborted while waiting for the client rate limit'));
      };
      const waiter: Waiter = { resolve, detach: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
      this.#schedule();
    });
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    this.#tokens = Math.min(this.#limit.burst, this.#tokens + (elapsed * this.#limit.qps) / 1000);
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.waiting === 0) return;
    const wait = Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / this.#limit.qps));
    this.#timer = this.#clock.schedule(wait, () => {
      this.#timer = undefined;
      this.#drain();
    });
  }

  #drain(): void {
    this.#refill();
    while (this.#tokens >= 1) {
      const next = this.#lanes.status.shift() ?? this.#lanes.ordinary.shift();
      if (next === undefined) break;
      this.#tokens -= 1;
      next.detach();
      next.resolve();
    }
    this.#schedule();
  }
}

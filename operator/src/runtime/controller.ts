// The reconcile loop: N workers take keys from one work queue and call the reconciler.
// All retry policy lives here — a thrown error means a rate-limited retry, a
// TerminalError is logged and not retried, `requeueAfterMs` schedules a poll.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { Informer, InformerHandlers, KubeObject } from './informer.ts';
import { keyOf } from './resource.ts';
import { WorkQueue, type ExponentialBackoff } from './work-queue.ts';

export interface ReconcileResult {
  /** Reconcile this key again after this long even if nothing changes. */
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  /** Aborted when the operator shuts down or loses leadership. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly reconcileId: string;
}

export interface Reconciler {
  reconcile(ctx: ReconcileContext, key: string): Promise<ReconcileResult>;
}

/** A failure that retrying cannot fix (bad input): logged, not retried. */
export class TerminalError extends Error {
  override readonly name: string = 'TerminalError';
}

export type ReconcileOutcome = 'success' | 'requeue' | 'error' | 'terminal';

export interface ControllerObserver {
  onReconcile(controller: string, outcome: ReconcileOutcome, seconds: number): void;
  onQueueDepth(controller: string, depth: number): void;
}

export interface ControllerOptions {
  name: string;
  reconciler: Reconciler;
  log: Logger;
  clock: Clock;
  workers?: number;
  backoff?: ExponentialBackoff;
  observer?: ControllerObserver;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  readonly #opts: ControllerOptions;
  readonly #log: Logger;
  /** Takes each of this controller's handlers off its informer. */
  readonly #unwatch: (() => void)[] = [];

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.#opts = opts;
    this.#log = opts.log.child({ controller: opts.name });
    this.queue = new WorkQueue({ clock: opts.clock, backoff: opts.backoff });
  }

  enqueue(key: string): void {
    this.queue.add(key);
    this.#reportDepth();
  }

  enqueueAfter(key: string, delayMs: number): void {
    this.queue.addAfter(key, delayMs);
  }

  /**
   * Feeds the queue from an informer: `toKeys` maps an object to the keys it affects.
   * `updateMatters`, when given, drops the updates that change nothing the controller
   * reads (a controller keyed by namespace need not run for every status write of every
   * object in it). `updateKeys`, when given, names the keys an update concerns in place
   * of every key of both versions (a StorageDomain's disk list changed for one VM, not
   * for the thousands on the domain).
   */
  watch<T extends KubeObject>(
    informer: Informer<T>,
    toKeys: (obj: T) => readonly string[] = (o) => [keyOf(o.metadata)],
    options: { updateMatters?: (oldObj: T, obj: T) => boolean; updateKeys?: (oldObj: T, obj: T) => readonly string[] } = {},
  ): void {
    const { updateMatters, updateKeys } = options;
    const handlers: InformerHandlers<T> = {
      onAdd: (obj) => this.#enqueueAll(toKeys(obj)),
      onUpdate: (old, obj) => {
        if (updateMatters !== undefined && !updateMatters(old, obj)) return;
        this.#enqueueAll(updateKeys === undefined ? [...new Set([...toKeys(old), ...toKeys(obj)])] : updateKeys(old, obj));
      },
      onDelete: (obj) => this.#enqueueAll(toKeys(obj)),
    };
    const registration = informer.addHandlers(handlers);
    this.#unwatch.push(() => informer.removeHandlers(registration));
  }

  /** Takes this controller's handlers off every informer it watches (the informers run on for the next controllers). */
  stopWatching(): void {
    for (const unwatch of this.#unwatch.splice(0)) unwatch();
  }

  /** Runs the workers until `signal` aborts, then waits for reconciles in flight. */
  async run(signal: AbortSignal): Promise<void> {
    const workers = this.#opts.workers ?? 2;
    const stop = (): void => void this.queue.shutDown();
    signal.addEventListener('abort', stop, { once: true });
    this.#log.info({ workers }, 'controller started');
    try {
      await Promise.all(Array.from({ length: workers }, () => this.#worker(signal)));
    } finally {
      signal.removeEventListener('abort', stop);
      await this.queue.shutDown();
      this.#log.info('controller stopped');
    }
  }

  #enqueueAll(keys: readonly string[]): void {
    for (const k of keys) this.queue.add(k);
    this.#reportDepth();
  }

  #reportDepth(): void {
    this.#opts.observer?.onQueueDepth(this.name, this.queue.depth);
  }

  async #worker(signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      this.#reportDepth();
      try {
        await this.#processOne(signal, key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  async #processOne(signal: AbortSignal, key: string): Promise<void> {
    const reconcileId = randomUUID().slice(0, 8);
    const slash = key.indexOf('/');
    const log = this.#log.child(
      slash < 0 ? { reconcileId, name: key } : { reconcileId, namespace: key.slice(0, slash), name: key.slice(slash + 1) },
    );
    const started = performance.now();
    let outcome: ReconcileOutcome;
    try {
      const result = await this.#opts.reconciler.reconcile({ signal, log, reconcileId }, key);
      this.queue.forget(key);
      if (result.requeueAfterMs !== undefined && !signal.aborted) {
        this.queue.addAfter(key, result.requeueAfterMs);
        outcome = 'requeue';
      } else {
        outcome = 'success';
      }
    } catch (err) {
      if (err instanceof TerminalError) {
        this.queue.forget(key);
        log.error({ err }, 'reconcile failed terminally, not retrying');
        outcome = 'terminal';
      } else {
        outcome = 'error';
        if (!signal.aborted) {
          const delayMs = this.queue.addRateLimited(key);
          log.warn({ err, retryInMs: delayMs, failures: this.queue.numRequeues(key) }, 'reconcile failed, retrying');
        }
      }
    }
    this.#opts.observer?.onReconcile(this.name, outcome, (performance.now() - started) / 1000);
  }
}

// One term of the operator's controllers over the process's caches (manager-caches.ts):
// the controllers and leader-only runnables registered on it run only while this replica
// holds the leader lease. A term ends when the lease is lost or the signal aborts: its
// controllers drain their reconciles in flight and take their handlers off the informers,
// and everything the term held (queues, expectations, ledgers, followers) goes with it;
// the caches run on, and the next term registers fresh controllers on them.
import type { Logger } from 'pino';
import type { z } from 'zod';
import { type Clock, type Sleep, sleepOn } from './clock.ts';
import type { Controller } from './controller.ts';
import type { HandlerRegistration, Informer, InformerHandlers, KubeObject } from './informer.ts';
import { LeaderElector, type LeaseClient } from './leader-election.ts';
import type { CacheScope, InformerRequest, ManagerCaches } from './manager-caches.ts';
import type { ResourceType } from './resource.ts';

export { DEFAULT_LIST_PAGE_SIZE, type CacheScope, type InformerRequest } from './manager-caches.ts';

/** A long-lived part: runs until its signal aborts. */
export interface Runnable {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

export interface ManagerOptions {
  log: Logger;
  client: LeaseClient;
  clock: Clock;
  /** The process's caches; they must be running (`ManagerCaches.run`) for the term to start. */
  caches: ManagerCaches;
  metrics: { onLeadershipChange(leading: boolean): void };
  /** Omit to run without leader election (a single replica). */
  leaderElection?: {
    namespace: string;
    leaseName: string;
    identity: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
}

export type ManagerExit = 'stopped' | 'leadership-lost';

export class Manager {
  readonly #o: ManagerOptions;
  readonly #sleep: Sleep;
  readonly #controllers: Controller[] = [];
  readonly #leaderRunnables: Runnable[] = [];
  readonly #handlers: (() => void)[] = [];
  #leading = false;

  constructor(opts: ManagerOptions) {
    this.#o = opts;
    this.#sleep = sleepOn(opts.clock);
  }

  get log(): Logger {
    return this.#o.log;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** See `ManagerCaches.restrictCache`. */
  restrictCache(type: ResourceType, scope: CacheScope): void {
    this.#o.caches.restrictCache(type, scope);
  }

  /** The process's shared informer of `type` (one per kind, namespace and selector). */
  informer<T extends KubeObject>(type: ResourceType, schema: z.ZodType<T>, opts: InformerRequest = {}): Informer<T> {
    return this.#o.caches.informer(type, schema, opts);
  }

  addController(controller: Controller): void {
    this.#controllers.push(controller);
  }

  addLeaderRunnable(runnable: Runnable): void {
    this.#leaderRunnables.push(runnable);
  }

  /**
   * Handlers for the term's own bookkeeping beside its controllers (gauges kept up to date
   * on change): added now, with what is cached replayed, on every replica whether leading
   * or not, and taken off the informer when the term ends.
   */
  addHandlers<T extends KubeObject>(informer: Informer<T>, handlers: InformerHandlers<T>): void {
    const registration: HandlerRegistration = informer.addHandlers(handlers);
    this.#handlers.push(() => informer.removeHandlers(registration));
  }

  /**
   * Waits for the caches, then campaigns and runs the term's work while leading. Resolves
   * once the term is over (`signal` aborted, or leadership lost) and its controllers have
   * stopped and left the informers; a Manager runs one term only.
   */
  async run(signal: AbortSignal): Promise<ManagerExit> {
    const { log, caches } = this.#o;
    try {
      await caches.waitForSync(signal);
      if (signal.aborted) return 'stopped';
      log.info({ informers: caches.kinds() }, 'caches synced');
      return await this.#runLeaderElected(signal);
    } finally {
      for (const c of this.#controllers) c.stopWatching();
      for (const remove of this.#handlers.splice(0)) remove();
      this.#controllers.length = 0;
      this.#leaderRunnables.length = 0;
      log.info('manager stopped');
    }
  }

  async #runLeaderElected(signal: AbortSignal): Promise<ManagerExit> {
    const le = this.#o.leaderElection;
    const lead = async (leading: AbortSignal): Promise<void> => {
      this.#leading = true;
      try {
        await Promise.all([
          ...this.#controllers.map((c) => c.run(leading)),
          ...this.#leaderRunnables.map((r) => r.run(leading)),
        ]);
      } finally {
        this.#leading = false;
      }
    };
    if (le === undefined) {
      this.#o.metrics.onLeadershipChange(true);
      await lead(signal);
      return 'stopped';
    }
    const elector = new LeaderElector({
      client: this.#o.client,
      namespace: le.namespace,
      name: le.leaseName,
      identity: le.identity,
      log: this.#o.log.child({ component: 'leader-election' }),
      clock: this.#o.clock,
      sleep: this.#sleep,
      leaseDurationMs: le.leaseDurationMs,
      renewDeadlineMs: le.renewDeadlineMs,
      retryPeriodMs: le.retryPeriodMs,
      onLeadershipChange: (leading) => this.#o.metrics.onLeadershipChange(leading),
    });
    const outcome = await elector.run(signal, lead);
    return outcome === 'lost' ? 'leadership-lost' : 'stopped';
  }
}

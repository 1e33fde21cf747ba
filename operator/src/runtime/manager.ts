// Starts the long-lived parts in order: the health/metrics server, then the informers
// (every replica keeps warm caches), then — only while this replica holds the leader
// lease — the controllers and other leader-only runnables. Shutdown reverses it:
// controllers drain their reconciles in flight, informers stop, the lease is released,
// the server closes.
import type { Logger } from 'pino';
import type { z } from 'zod';
import { type Clock, type Sleep, sleepOn } from './clock.ts';
import type { Controller } from './controller.ts';
import { HealthServer, type ListenAddress, type MetricsSource } from './health-server.ts';
import { Informer, type InformerObserver, type KubeObject, type ListWatchClient } from './informer.ts';
import { LeaderElector, type LeaseClient } from './leader-election.ts';
import type { ResourceType } from './resource.ts';

/** A long-lived part: runs until its signal aborts. */
export interface Runnable {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

export interface ManagerOptions {
  log: Logger;
  client: ListWatchClient & LeaseClient;
  clock: Clock;
  metrics: MetricsSource & InformerObserver & { onLeadershipChange(leading: boolean): void };
  /** The probes' address, and /metrics' own address (absent: the probes' listener serves it too). */
  health: { host: string; port: number; metricsListen?: ListenAddress | undefined };
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
  readonly #informers = new Map<string, Informer<KubeObject>>();
  readonly #controllers: Controller[] = [];
  readonly #leaderRunnables: Runnable[] = [];
  #healthPort: number | undefined;
  #leading = false;

  constructor(opts: ManagerOptions) {
    this.#o = opts;
    this.#sleep = sleepOn(opts.clock);
  }

  get log(): Logger {
    return this.#o.log;
  }

  /** The bound port of the health server once running. */
  get healthPort(): number | undefined {
    return this.#healthPort;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** The shared informer of `type` (one per kind, namespace and selector). */
  informer<T extends KubeObject>(
    type: ResourceType,
    schema: z.ZodType<T>,
    opts: { namespace?: string; labelSelector?: string } = {},
  ): Informer<T> {
    const id = `${type.group}/${type.plural}/${opts.namespace ?? ''}/${opts.labelSelector ?? ''}`;
    const existing = this.#informers.get(id);
    if (existing !== undefined) return existing as unknown as Informer<T>;
    const informer = new Informer<T>({
      client: this.#o.client,
      type,
      schema,
      log: this.#o.log.child({ informer: type.kind }),
      sleep: this.#sleep,
      observer: this.#o.metrics,
      ...opts,
    });
    this.#informers.set(id, informer as unknown as Informer<KubeObject>);
    return informer;
  }

  addController(controller: Controller): void {
    this.#controllers.push(controller);
  }

  addLeaderRunnable(runnable: Runnable): void {
    this.#leaderRunnables.push(runnable);
  }

  /** Runs until `signal` aborts (or leadership is lost); resolves after a clean shutdown. */
  async run(signal: AbortSignal): Promise<ManagerExit> {
    const { log } = this.#o;
    const informers = [...this.#informers.values()];
    const health = new HealthServer({
      ...this.#o.health,
      log: log.child({ component: 'health' }),
      metrics: this.#o.metrics,
      liveness: [{ name: 'ping', check: () => undefined }],
      readiness: [
        {
          name: 'informers-synced',
          check: () => {
            const pending = informers.filter((i) => !i.hasSynced()).map((i) => i.kind);
            return pending.length === 0 ? undefined : `not synced: ${pending.join(', ')}`;
          },
        },
      ],
    });
    this.#healthPort = await health.listen();
    const informerStop = new AbortController();
    const informerRuns = informers.map((i) => i.run(informerStop.signal));
    try {
      await Promise.all(informers.map((i) => i.waitForSync(signal)));
      if (signal.aborted) return 'stopped';
      log.info({ informers: informers.map((i) => i.kind) }, 'caches synced');
      return await this.#runLeaderElected(signal);
    } finally {
      informerStop.abort();
      await Promise.all(informerRuns);
      await health.close();
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

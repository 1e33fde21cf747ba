// Starts the long-lived parts in order: the health/metrics server, then the informers
// (one shared cache per kind, namespace and selector; every replica keeps them warm),
// then — only while this replica holds the leader
// lease — the controllers and other leader-only runnables. Shutdown reverses it:
// controllers drain their reconciles in flight, informers stop, the lease is released,
// the server closes.
import type { Logger } from 'pino';
import type { z } from 'zod';
import { type Clock, type Sleep, sleepOn } from './clock.ts';
import type { Controller } from './controller.ts';
import { HealthServer, type ListenAddress, type MetricsSource } from './health-server.ts';
import { Informer, type InformerObserver, type KubeObject, type ListWatchClient } from './informer.ts';
import { stripUnreadMetadata } from './object-trim.ts';
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
  /** Applied to every object before it is parsed and cached (default: `stripUnreadMetadata`). */
  defaultTransform?: (raw: unknown) => unknown;
  /** Objects per list page (default DEFAULT_LIST_PAGE_SIZE). */
  listPageSize?: number;
}

export type ManagerExit = 'stopped' | 'leadership-lost';

/** Objects per list page when the options name none (client-go's reflector pages by 500). */
export const DEFAULT_LIST_PAGE_SIZE = 500;

/** What the cache of one kind holds (controller-runtime's `cache.Options.ByObject`). */
export interface CacheScope {
  /** Informers of the kind that name no selector of their own watch only these objects. */
  readonly labelSelector: string;
}

export interface InformerRequest {
  namespace?: string;
  labelSelector?: string;
  /** Replaces the manager's default transform for this informer (ids must then differ: give it its own selector). */
  transform?: (raw: unknown) => unknown;
}

export class Manager {
  readonly #o: ManagerOptions;
  readonly #sleep: Sleep;
  readonly #informers = new Map<string, Informer<KubeObject>>();
  readonly #scopes = new Map<string, CacheScope>();
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

  /**
   * Restricts what the cache of `type` holds: every informer of the kind requested
   * without a selector of its own watches only objects matching `scope.labelSelector`
   * (the operator's own launcher pods rather than every pod of the cluster). Call it
   * before any controller asks for that kind; a later restriction is an error, since
   * an unrestricted cache would already be shared.
   */
  restrictCache(type: ResourceType, scope: CacheScope): void {
    const kind = kindId(type);
    const current = this.#scopes.get(kind);
    if (current !== undefined && current.labelSelector === scope.labelSelector) return;
    if (current !== undefined) throw new Error(`the ${type.kind} cache is already restricted to ${current.labelSelector}`);
    if ([...this.#informers.keys()].some((id) => id.startsWith(`${kind}/`) && id.endsWith('/'))) {
      throw new Error(`an unrestricted ${type.kind} informer exists already: restrict the cache before controllers ask for it`);
    }
    this.#scopes.set(kind, scope);
  }

  /** The shared informer of `type` (one per kind, namespace and selector). */
  informer<T extends KubeObject>(type: ResourceType, schema: z.ZodType<T>, opts: InformerRequest = {}): Informer<T> {
    const labelSelector = opts.labelSelector ?? this.#scopes.get(kindId(type))?.labelSelector;
    const id = `${kindId(type)}/${opts.namespace ?? ''}/${labelSelector ?? ''}`;
    const existing = this.#informers.get(id);
    if (existing !== undefined) return existing as unknown as Informer<T>;
    const informer = new Informer<T>({
      client: this.#o.client,
      type,
      schema,
      log: this.#o.log.child({ informer: type.kind }),
      sleep: this.#sleep,
      observer: this.#o.metrics,
      pageSize: this.#o.listPageSize ?? DEFAULT_LIST_PAGE_SIZE,
      transform: opts.transform ?? this.#o.defaultTransform ?? stripUnreadMetadata,
      ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
      ...(labelSelector === undefined ? {} : { labelSelector }),
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

function kindId(type: ResourceType): string {
  return `${type.group}/${type.plural}`;
}

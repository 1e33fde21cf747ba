// The operator's caches (controller-runtime's cache): one informer per kind, namespace and
// selector, shared by every controller and kept for the life of the process. They only
// mirror the API server, so they hold nothing a leader term owns: a standby keeps them
// warm, and a new term adds its handlers to caches that are already whole (each replays
// its contents to a new handler) instead of listing every object again beside the last
// term's copies. An informer asked for while the caches run starts at once.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Sleep } from './clock.ts';
import { Informer, type InformerObserver, type KubeObject, type ListWatchClient } from './informer.ts';
import { stripUnreadMetadata } from './object-trim.ts';
import type { ResourceType } from './resource.ts';

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
  /** Replaces the default transform for this informer (ids must then differ: give it its own selector). */
  transform?: (raw: unknown) => unknown;
}

export interface ManagerCachesOptions {
  log: Logger;
  client: ListWatchClient;
  sleep: Sleep;
  observer?: InformerObserver;
  /** Applied to every object before it is parsed and cached (default: `stripUnreadMetadata`). */
  defaultTransform?: (raw: unknown) => unknown;
  /** Objects per list page (default DEFAULT_LIST_PAGE_SIZE). */
  listPageSize?: number;
}

export class ManagerCaches {
  readonly #o: ManagerCachesOptions;
  readonly #informers = new Map<string, Informer<KubeObject>>();
  readonly #scopes = new Map<string, CacheScope>();
  #running: { signal: AbortSignal; runs: Promise<void>[] } | undefined;

  constructor(opts: ManagerCachesOptions) {
    this.#o = opts;
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
      sleep: this.#o.sleep,
      pageSize: this.#o.listPageSize ?? DEFAULT_LIST_PAGE_SIZE,
      transform: opts.transform ?? this.#o.defaultTransform ?? stripUnreadMetadata,
      ...(this.#o.observer === undefined ? {} : { observer: this.#o.observer }),
      ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
      ...(labelSelector === undefined ? {} : { labelSelector }),
    });
    this.#informers.set(id, informer as unknown as Informer<KubeObject>);
    if (this.#running !== undefined && !this.#running.signal.aborted) this.#running.runs.push(informer.run(this.#running.signal));
    return informer;
  }

  /** Runs every informer, and those asked for later, until `signal` aborts; resolves once all stopped. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running !== undefined) throw new Error('the caches run already');
    const runs = [...this.#informers.values()].map((i) => i.run(signal));
    this.#running = { signal, runs };
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    // Informers asked for while stopping were pushed too; wait for every one.
    while (runs.length > 0) await Promise.all(runs.splice(0));
  }

  /** Resolves once every informer asked for so far has filled its cache (or `signal` aborts). */
  async waitForSync(signal: AbortSignal): Promise<void> {
    await Promise.all([...this.#informers.values()].map((i) => i.waitForSync(signal)));
  }

  /** The kinds whose first list has not completed yet. */
  unsynced(): string[] {
    return [...this.#informers.values()].filter((i) => !i.hasSynced()).map((i) => i.kind);
  }

  /** The kinds cached, in the order they were asked for. */
  kinds(): string[] {
    return [...this.#informers.values()].map((i) => i.kind);
  }
}

function kindId(type: ResourceType): string {
  return `${type.group}/${type.plural}`;
}

// A supervised informer: list (in pages), then watch from the list's resourceVersion;
// relist on 410 Gone; reconnect with exponential backoff (1 s → 30 s) after any error,
// forever, until its signal is aborted. Every object is trimmed by the informer's
// transform (fields no controller reads) and parsed with the kind's zod schema at the
// edge, so the cache and the handlers only ever see typed values. Indexes (name → keys
// of an object) answer "the objects with this key" without scanning the cache. An
// update that changes nothing the schema keeps wakes no handler.
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { z } from 'zod';
import { KubeApiError, type RequestOptions, type WatchStream, isGone } from './kube-client.ts';
import { type ResourceType, collectionPath, keyOf } from './resource.ts';
import type { Sleep } from './clock.ts';
import { Index, type IndexFunction } from './informer-index.ts';

export type { IndexFunction } from './informer-index.ts';

/** What every cached object has. */
export interface KubeObject {
  metadata: { name: string; namespace?: string | undefined; resourceVersion?: string | undefined };
}

/** The slice of the API client an informer needs. */
export interface ListWatchClient {
  request(method: 'GET', path: string, options?: RequestOptions): Promise<unknown>;
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    handlers: { onEvent: (event: unknown) => void; onBadLine: (line: string) => void },
    signal: AbortSignal,
  ): Promise<WatchStream>;
}

export interface InformerHandlers<T> {
  onAdd?: (obj: T) => void;
  onUpdate?: (oldObj: T, obj: T) => void;
  onDelete?: (obj: T) => void;
}

/** What `addHandlers` returns: hand it to `removeHandlers` to stop the handlers' events. */
export interface HandlerRegistration {
  readonly kind: string;
}

/** Lifecycle of the list/watch, for metrics. */
export interface InformerObserver {
  onList(kind: string): void;
  onWatchConnected(kind: string): void;
  onWatchError(kind: string, reason: 'gone' | 'error' | 'closed'): void;
  onBadObject(kind: string): void;
}

export interface InformerOptions<T extends KubeObject> {
  client: ListWatchClient;
  type: ResourceType;
  schema: z.ZodType<T>;
  log: Logger;
  namespace?: string;
  labelSelector?: string;
  sleep: Sleep;
  observer?: InformerObserver;
  /** Server-side watch timeout; the informer reconnects from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  /** Objects per list page (`limit`/`continue`); one unpaginated list when absent. */
  pageSize?: number;
  /**
   * Applied to every listed or watched object before the schema parses it: drops what no
   * controller reads (managedFields …) so that it is never held. The schema still
   * validates the result.
   */
  transform?: (raw: unknown) => unknown;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

const listSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional(), continue: z.string().optional() }).optional(),
  items: z.array(z.unknown()).nullable().optional(),
});

const watchEventSchema = z.object({
  type: z.enum(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']),
  object: z.unknown(),
});

const watchErrorStatus = z.object({ code: z.number().optional(), message: z.string().optional() });
const bookmarkSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }) });

class GoneError extends Error {
  override readonly name = 'GoneError';
}

export class Informer<T extends KubeObject> {
  readonly #opts: InformerOptions<T>;
  readonly #cache = new Map<string, T>();
  readonly #handlers = new Map<HandlerRegistration, InformerHandlers<T>>();
  readonly #indexes = new Map<string, Index<T>>();
  #resourceVersion: string | undefined;
  #synced = false;
  #syncWaiters: (() => void)[] = [];

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
  }

  get kind(): string {
    return this.#opts.type.kind;
  }

  /**
   * Adds handlers; the objects already cached are handed to `onAdd` at once (client-go's
   * replay), so handlers added to a filled cache see the same as those added before it filled.
   */
  addHandlers(handlers: InformerHandlers<T>): HandlerRegistration {
    const registration: HandlerRegistration = { kind: this.kind };
    this.#handlers.set(registration, handlers);
    if (handlers.onAdd !== undefined) for (const obj of this.#cache.values()) handlers.onAdd(obj);
    return registration;
  }

  /** Stops the events of handlers added earlier (a registration of another informer, or removed already, is ignored). */
  removeHandlers(registration: HandlerRegistration): void {
    this.#handlers.delete(registration);
  }

  /** How many handler sets receive this informer's events. */
  get handlerCount(): number {
    return this.#handlers.size;
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /**
   * Adds an index (before or after the cache filled: it is built from what is cached).
   * Adding the same name twice is an error — share the first.
   */
  addIndex(name: string, fn: IndexFunction<T>): void {
    if (this.#indexes.has(name)) throw new Error(`informer ${this.kind} already has an index named ${name}`);
    const index = new Index(fn);
    for (const [key, obj] of this.#cache) index.update(key, undefined, obj);
    this.#indexes.set(name, index);
  }

  hasIndex(name: string): boolean {
    return this.#indexes.has(name);
  }

  /** The cached objects index `name` files under `value`. */
  byIndex(name: string, value: string): T[] {
    const index = this.#indexes.get(name);
    if (index === undefined) throw new Error(`informer ${this.kind} has no index named ${name}`);
    const out: T[] = [];
    for (const key of index.keys(value)) {
      const obj = this.#cache.get(key);
      if (obj !== undefined) out.push(obj);
    }
    return out;
  }

  /** How many cached objects index `name` files under `value`, without reading them. */
  countByIndex(name: string, value: string): number {
    const index = this.#indexes.get(name);
    if (index === undefined) throw new Error(`informer ${this.kind} has no index named ${name}`);
    return index.keys(value).size;
  }

  /** How many objects are cached. */
  get size(): number {
    return this.#cache.size;
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves once the first list has filled the cache (or the signal aborts). */
  waitForSync(signal: AbortSignal): Promise<void> {
    if (this.#synced || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#syncWaiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Runs list+watch until `signal` aborts; never gives up on errors. */
  async run(signal: AbortSignal): Promise<void> {
    const { log, sleep } = this.#opts;
    const minBackoff = this.#opts.minBackoffMs ?? 1000;
    const maxBackoff = this.#opts.maxBackoffMs ?? 30_000;
    let backoff = minBackoff;
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === undefined) await this.#relist(signal);
        const healthy = await this.#watchOnce(signal);
        if (signal.aborted) break;
        if (healthy) backoff = minBackoff;
        else {
          await sleep(backoff, signal);
          backoff = Math.min(backoff * 2, maxBackoff);
        }
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof GoneError || isGone(err)) {
          this.#opts.observer?.onWatchError(this.kind, 'gone');
          log.info({ kind: this.kind }, 'resourceVersion too old, relisting');
          this.#resourceVersion = undefined;
          continue;
        }
        this.#opts.observer?.onWatchError(this.kind, 'error');
        log.warn({ err, kind: this.kind, backoffMs: backoff }, 'list/watch failed, retrying');
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
  }

  #query(): Record<string, string | undefined> {
    return { labelSelector: this.#opts.labelSelector };
  }

  /**
   * Lists every object, page by page, into the cache: each page's objects replace their
   * cached versions as the page arrives (adds and updates go to the handlers then), and
   * once the last page is in, the objects no page held are deleted. The cache never holds
   * a second copy of the kind beside itself, only the keys seen. A list that fails half
   * way leaves newer objects and no deletion; the next list completes it.
   */
  async #relist(signal: AbortSignal): Promise<void> {
    const { client, type, namespace, pageSize } = this.#opts;
    const seen = new Set<string>();
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      const query = { ...this.#query(), limit: pageSize, continue: cont };
      const raw = await client.request('GET', collectionPath(type, namespace), { query, signal });
      const list = listSchema.parse(raw);
      for (const item of list.items ?? []) {
        const obj = this.#parse(item);
        if (obj === undefined) continue;
        const key = keyOf(obj.metadata);
        seen.add(key);
        this.#upsert(key, obj);
      }
      // Every page of one list carries the list's resourceVersion; the watch starts there.
      resourceVersion = list.metadata?.resourceVersion ?? resourceVersion;
      cont = pageSize === undefined || list.metadata?.continue === '' ? undefined : list.metadata?.continue;
    } while (cont !== undefined && !signal.aborted);
    if (signal.aborted) return;
    this.#opts.observer?.onList(this.kind);
    for (const [key, old] of this.#cache) {
      if (seen.has(key)) continue;
      this.#remove(key, old);
      this.#emitDelete(old);
    }
    this.#resourceVersion = resourceVersion;
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
  }

  /** One watch connection. Returns true when it carried events (a healthy close). */
  async #watchOnce(signal: AbortSignal): Promise<boolean> {
    const { client, type, namespace, log } = this.#opts;
    const local = new AbortController();
    const abort = (): void => local.abort();
    signal.addEventListener('abort', abort, { once: true });
    // Aborted before this watch began (e.g. right after a relist): it must not open at all.
    if (signal.aborted) local.abort();
    let events = 0;
    let gone = false;
    try {
      const query = {
        ...this.#query(),
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
      };
      const stream = await client.watch(
        collectionPath(type, namespace),
        query,
        {
          onEvent: (event) => {
            events += 1;
            if (!this.#onWatchEvent(event)) {
              gone = true;
              local.abort();
            }
          },
          onBadLine: (line) => log.warn({ kind: this.kind, line: line.slice(0, 200) }, 'unparsable watch line'),
        },
        local.signal,
      );
      this.#opts.observer?.onWatchConnected(this.kind);
      await stream.done;
    } finally {
      signal.removeEventListener('abort', abort);
      local.abort();
    }
    if (gone) throw new GoneError('watch expired');
    this.#opts.observer?.onWatchError(this.kind, 'closed');
    return events > 0;
  }

  /** Applies one watch event; false means the watch must restart with a relist. */
  #onWatchEvent(raw: unknown): boolean {
    const event = watchEventSchema.safeParse(raw);
    if (!event.success) {
      this.#opts.log.warn({ kind: this.kind }, 'malformed watch event');
      return true;
    }
    const { type, object } = event.data;
    if (type === 'ERROR') {
      const status = watchErrorStatus.safeParse(object);
      const code = status.success ? status.data.code : undefined;
      if (code === 410) return false;
      throw new KubeApiError(code ?? 500, 'WatchError', status.success ? (status.data.message ?? '') : '', {
        method: 'GET',
        path: collectionPath(this.#opts.type, this.#opts.namespace),
      });
    }
    if (type === 'BOOKMARK') {
      const bookmark = bookmarkSchema.safeParse(object);
      if (bookmark.success) this.#resourceVersion = bookmark.data.metadata.resourceVersion;
      return true;
    }
    const obj = this.#parse(object);
    if (!obj) return true;
    const key = keyOf(obj.metadata);
    if (type === 'DELETED') {
      const old = this.#cache.get(key);
      this.#remove(key, old);
      this.#emitDelete(old ?? obj);
    } else {
      this.#upsert(key, obj);
    }
    this.#resourceVersion = obj.metadata.resourceVersion ?? this.#resourceVersion;
    return true;
  }

  #parse(raw: unknown): T | undefined {
    const transform = this.#opts.transform;
    const parsed = this.#opts.schema.safeParse(transform === undefined ? raw : transform(raw));
    if (parsed.success) return parsed.data;
    this.#opts.observer?.onBadObject(this.kind);
    const meta = z.object({ metadata: z.object({ name: z.string().optional(), namespace: z.string().optional() }) }).safeParse(raw);
    this.#opts.log.error(
      { kind: this.kind, object: meta.success ? meta.data.metadata : undefined, issues: parsed.error.issues.slice(0, 5) },
      'object does not match its schema, ignored',
    );
    return undefined;
  }

  #remove(key: string, old: T | undefined): void {
    this.#cache.delete(key);
    for (const index of this.#indexes.values()) index.update(key, old, undefined);
  }

  #upsert(key: string, obj: T): void {
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    for (const index of this.#indexes.values()) index.update(key, old, obj);
    if (old === undefined) {
      for (const h of this.#handlers.values()) h.onAdd?.(obj);
    } else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion && !sameBesideVersion(old, obj)) {
      for (const h of this.#handlers.values()) h.onUpdate?.(old, obj);
    }
  }

  #emitDelete(obj: T): void {
    for (const h of this.#handlers.values()) h.onDelete?.(obj);
  }
}

/**
 * Equal but for the resourceVersion: the update changed only what the transform and the
 * schema drop (a node's heartbeat times, managedFields, status fields no controller
 * reads). The cache takes the new version (writes carry it); no handler is woken, so an
 * idle cluster's heartbeats cost no reconcile and no scan.
 */
function sameBesideVersion(a: KubeObject, b: KubeObject): boolean {
  return isDeepStrictEqual({ ...a, metadata: { ...a.metadata, resourceVersion: undefined } }, { ...b, metadata: { ...b.metadata, resourceVersion: undefined } });
}

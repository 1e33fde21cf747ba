// For unit tests of the informer: an API server's list and watch of one kind. Scripted
// lists are served in pages of the request's `limit` with continue tokens (a page may
// fail); each watch replays its scripted events, then stays open until its signal aborts.
import type { ListWatchClient } from './informer.ts';
import type { RequestOptions, WatchStream } from './kube-client.ts';

export interface ScriptedList {
  readonly items: readonly unknown[];
  readonly rv: string;
  /** The page (0 first) whose request fails with a reset connection; the list is then used up. */
  readonly failAtPage?: number;
}

export class PagedListWatchFake implements ListWatchClient {
  /** Served in order; a list is used up once its last page (or its failing one) is served. */
  lists: ScriptedList[] = [];
  /** One script a watch, in order; a watch with none left replays nothing. */
  watchEvents: unknown[][] = [];
  /** Every list request's query. */
  readonly queries: Record<string, unknown>[] = [];
  pagesServed = 0;
  listsCompleted = 0;
  watches = 0;
  /** Called before each page is served, with the page's number in its list (0 first). */
  beforePage: (page: number) => void = () => undefined;

  request(_method: 'GET', _path: string, options?: RequestOptions): Promise<unknown> {
    const query = options?.query ?? {};
    this.queries.push(query);
    const list = this.lists[0];
    if (list === undefined) return Promise.reject(new Error('no list scripted'));
    const limit = typeof query.limit === 'number' ? query.limit : list.items.length;
    const from = typeof query.continue === 'string' ? Number(query.continue) : 0;
    const page = from / limit;
    this.beforePage(page);
    if (list.failAtPage === page) {
      this.lists.shift();
      return Promise.reject(new Error('connection reset'));
    }
    this.pagesServed += 1;
    const next = from + limit < list.items.length ? String(from + limit) : undefined;
    if (next === undefined) {
      this.lists.shift();
      this.listsCompleted += 1;
    }
    return Promise.resolve({ metadata: { resourceVersion: list.rv, ...(next === undefined ? {} : { continue: next }) }, items: list.items.slice(from, from + limit) });
  }

  watch(_path: string, _query: Record<string, unknown>, handlers: { onEvent: (event: unknown) => void }, signal: AbortSignal): Promise<WatchStream> {
    this.watches += 1;
    const events = this.watchEvents.shift() ?? [];
    const done = (async (): Promise<void> => {
      await Promise.resolve();
      for (const e of events) handlers.onEvent(e);
      if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    })();
    return Promise.resolve({ done });
  }
}

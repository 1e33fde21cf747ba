// A small JSON REST client for the Kubernetes API. Authentication and TLS come from an
// ApiEndpoint (api-access.ts, the operator's own) or from @kubernetes/client-node's
// KubeConfig (the same request context its own Watch uses); bodies stay plain JSON so that every caller parses them with its own zod schema.
// Every request has a deadline (the client's default, or the caller's `timeoutMs`):
// a stalled API server or connection fails the request with KubeTimeoutError instead
// of holding the caller for the transport's minutes-long defaults. A watch's deadline
// covers its establishment; the open stream is bounded by the informer's own timeouts.
// An optional client-side rate limit (rate-limiter.ts) paces requests — status writes
// first; watches and Lease requests (leader election must renew on time) are never held.
import type { KubeConfig } from '@kubernetes/client-node';
// The request context alone: the package's index loads every generated model (~50 MiB).
import { RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { ApiEndpoint } from './api-access.ts';
import { z } from 'zod';
import { systemClock, type Clock } from './clock.ts';
import { type RateLimit, type RequestLane, TokenBucket } from './rate-limiter.ts';

/** Which HTTP verbs the client issues. */
export type KubeMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** The content types Kubernetes accepts for PATCH. */
export type PatchType = 'merge' | 'json' | 'apply';

const patchContentType: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
};

const statusBody = z.object({
  kind: z.literal('Status').optional(),
  message: z.string().optional(),
  reason: z.string().optional(),
  code: z.number().optional(),
});

/** An error answer from the API server (its `Status` body), with the HTTP code. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  readonly statusCode: number;
  readonly reason: string;
  readonly method: KubeMethod;
  readonly path: string;
  constructor(statusCode: number, reason: string, message: string, request: { method: KubeMethod; path: string }) {
    super(`${request.method} ${request.path}: ${statusCode} ${reason}: ${message}`);
    this.statusCode = statusCode;
    this.reason = reason;
    this.method = request.method;
    this.path = request.path;
  }
}

/** The API server could not be reached or the connection broke. */
export class KubeTransportError extends Error {
  override readonly name: string = 'KubeTransportError';
}

/** No answer within the request's deadline. */
export class KubeTimeoutError extends KubeTransportError {
  override readonly name = 'KubeTimeoutError';
}

/** The deadline of a request without `timeoutMs`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 404;
}
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 409;
}
export function isAlreadyExists(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 409 && err.reason === 'AlreadyExists';
}
export function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 410;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  patchType?: PatchType;
  signal?: AbortSignal;
  /** Deadline of this request (answer and body), instead of the client's default. */
  timeoutMs?: number;
}

export interface KubeClientOptions {
  /** Deadline of every request without its own `timeoutMs` (DEFAULT_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number;
  /** Client-side rate limit of requests (watches and Leases exempt); none when absent. */
  rateLimit?: RateLimit;
  clock?: Clock;
}

/** How a request is counted: reads, writes, status writes, watches. */
export type RequestClass = 'read' | 'write' | 'status' | 'watch';

/** Sees every request the client sends, with its answer's HTTP code (0: no answer). */
export interface KubeRequestObserver {
  onApiRequest(method: KubeMethod, cls: RequestClass, code: number, resource: string): void;
  /** A request waited this long for the client rate limit before it was sent. */
  onRateLimitWait?(seconds: number): void;
}

/**
 * The resource a request path names (`pods`, `virtualmachines`, `leases` …), for
 * counting requests per resource: a bounded set, never an object's name.
 */
export function resourceOf(path: string): string {
  const parts = path.split('?')[0]?.split('/').filter((p) => p !== '') ?? [];
  // /api/v1/… or /apis/<group>/<version>/…
  const rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  const resource = rest[0] === 'namespaces' && rest.length >= 3 ? rest[2] : rest[0];
  return resource !== undefined && /^[a-z0-9]{1,63}$/.test(resource) ? resource : 'other';
}

function classify(method: KubeMethod, path: string): RequestClass {
  if (method === 'GET') return 'read';
  return path.endsWith('/status') ? 'status' : 'write';
}

const exemptPath = /^\/apis\/coordination\.k8s\.io\//;

/** Where one request goes and how it authenticates. */
interface RequestTarget {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly dispatcher: Dispatcher | undefined;
}

/** An answer's code and body (consumed once, by text() or iteration). */
type Answer = Dispatcher.ResponseData;

/** One open watch: lines are parsed JSON values; `done` settles when the stream ends. */
export interface WatchStream {
  readonly done: Promise<void>;
}

export class KubeClient {
  readonly #access: KubeConfig | ApiEndpoint;
  readonly #server: string;
  readonly fieldManager: string;
  readonly #timeoutMs: number;
  readonly #bucket: TokenBucket | undefined;
  #observer: KubeRequestObserver | undefined;
  #dispatcher: Dispatcher | undefined;
  #closed = false;

  constructor(access: KubeConfig | ApiEndpoint, fieldManager: string, options: KubeClientOptions = {}) {
    let server: string;
    if ('getCurrentCluster' in access) {
      const cluster = access.getCurrentCluster();
      if (!cluster) throw new Error('kubeconfig has no current cluster');
      server = cluster.server;
    } else server = access.server;
    this.#access = access;
    this.#server = server.replace(/\/$/, '');
    this.fieldManager = fieldManager;
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#bucket = options.rateLimit === undefined ? undefined : new TokenBucket(options.rateLimit, options.clock ?? systemClock);
  }

  /** Reports every request from now on to `observer` (replacing the previous one). */
  observe(observer: KubeRequestObserver | undefined): void {
    this.#observer = observer;
  }

  /**
   * Closes the connection pool once the requests under way have ended, or destroys it
   * after `graceMs`. A process's last call: watches are aborted before it, and a request
   * after it fails with KubeTransportError.
   */
  async close(graceMs = 2000): Promise<void> {
    this.#closed = true;
    const access = this.#access;
    const pool = 'applySecurityAuthentication' in access ? this.#dispatcher : access.dispatcher;
    if (pool === undefined) return;
    const closed = pool.close().then(
      () => true,
      () => true,
    );
    // Unreferenced: the wait never holds the process open by itself.
    if (!(await Promise.race([closed, sleep(graceMs, false, { ref: false })]))) await pool.destroy().catch(() => undefined);
  }

  /** Requests waiting for the client rate limit. */
  get throttled(): number {
    return this.#bucket?.waiting ?? 0;
  }

  /** Sends one request and returns the parsed JSON answer (2xx) or throws KubeApiError, KubeTransportError or KubeTimeoutError. */
  async request(method: KubeMethod, path: string, options: RequestOptions = {}): Promise<unknown> {
    const cls = classify(method, path);
    await this.#paced(cls, path, options.signal);
    const ctx = await this.#context(method, path, options);
    const deadline = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    const signal = options.signal === undefined ? deadline : AbortSignal.any([options.signal, deadline]);
    let response: Answer;
    try {
      response = await this.#send(ctx, method, path, { ...options, signal }, deadline);
    } catch (err) {
      this.#observer?.onApiRequest(method, cls, 0, resourceOf(path));
      throw err;
    }
    this.#observer?.onApiRequest(method, cls, response.statusCode, resourceOf(path));
    let text: string;
    try {
      text = await response.body.text();
    } catch (err) {
      throw transportError(method, path, err, deadline);
    }
    if (response.statusCode < 200 || response.statusCode >= 300) throw apiError(response.statusCode, text, method, path);
    return text.length > 0 ? JSON.parse(text) : undefined;
  }

  /** Waits for the client rate limit, if any applies to `path` (status writes in their own lane first). */
  async #paced(cls: RequestClass, path: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.#bucket === undefined || exemptPath.test(path)) return;
    const lane: RequestLane = cls === 'status' ? 'status' : 'ordinary';
    const queued = performance.now();
    await this.#bucket.acquire(lane, signal);
    this.#observer?.onRateLimitWait?.((performance.now() - queued) / 1000);
  }

  get(path: string, signal?: AbortSignal): Promise<unknown> {
    return this.request('GET', path, { signal });
  }

  create(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.request('POST', path, { body, signal, query: { fieldManager: this.fieldManager } });
  }

  patch(path: string, body: unknown, patchType: PatchType, signal?: AbortSignal): Promise<unknown> {
    const query = { fieldManager: this.fieldManager, force: patchType === 'apply' ? true : undefined };
    return this.request('PATCH', path, { body, patchType, signal, query });
  }

  delete(path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.request('DELETE', path, { body, signal });
  }

  /**
   * Opens a watch and calls `onEvent` for every line (parsed JSON; unparsable lines go to
   * `onBadLine`). Resolves once the stream is established (HTTP 200), rejects otherwise.
   */
  async watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    handlers: { onEvent: (event: unknown) => void; onBadLine: (line: string) => void },
    signal: AbortSignal,
  ): Promise<WatchStream> {
    const options: RequestOptions = { query: { ...query, watch: true }, signal };
    const ctx = await this.#context('GET', path, options);
    // The deadline covers the answer's headers only: then the stream is the watch.
    const establish = new AbortController();
    const timer = setTimeout(() => establish.abort(new KubeTimeoutError(`watch ${path}: no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    let response: Answer;
    try {
      response = await this.#send(ctx, 'GET', path, { ...options, signal: AbortSignal.any([signal, establish.signal]) }, establish.signal);
    } catch (err) {
      this.#observer?.onApiRequest('GET', 'watch', 0, resourceOf(path));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    this.#observer?.onApiRequest('GET', 'watch', response.statusCode, resourceOf(path));
    if (response.statusCode !== 200) {
      throw apiError(response.statusCode, await response.body.text(), 'GET', path);
    }
    const body = response.body;
    const done = (async (): Promise<void> => {
      const decoder = new TextDecoder();
      let buffered = '';
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          buffered += decoder.decode(chunk, { stream: true });
          let newline = buffered.indexOf('\n');
          while (newline >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line.length > 0) dispatchLine(line, handlers);
            newline = buffered.indexOf('\n');
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        throw new KubeTransportError(`watch ${path} broke`, { cause: err });
      }
    })();
    return { done };
  }

  async #context(method: KubeMethod, path: string, options: RequestOptions): Promise<RequestTarget> {
    const url = new URL(this.#server + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const access = this.#access;
    if (!('applySecurityAuthentication' in access)) return { url: url.toString(), headers: await access.headers(), dispatcher: access.dispatcher };
    const ctx = new RequestContext(url.toString(), method);
    await access.applySecurityAuthentication(ctx);
    return { url: ctx.getUrl(), headers: ctx.getHeaders(), dispatcher: this.#dispatcherOf(ctx) };
  }

  /**
   * One connection pool for every request of this client. client-node's
   * applySecurityAuthentication makes a new undici Agent per request context: used as is,
   * every request paid a TLS handshake and left its own idle connection behind until the
   * keep-alive timeout (memory and API-server work growing with the request rate). The
   * credentials' headers still come from each request's context; the TLS material of a
   * loaded kubeconfig does not change.
   */
  #dispatcherOf(ctx: RequestContext): Dispatcher | undefined {
    this.#dispatcher ??= ctx.getDispatcher();
    return this.#dispatcher;
  }

  async #send(
    ctx: RequestTarget,
    method: KubeMethod,
    path: string,
    options: RequestOptions,
    deadline: AbortSignal,
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...ctx.headers, accept: 'application/json' };
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = method === 'PATCH' ? patchContentType[options.patchType ?? 'merge'] : 'application/json';
      body = JSON.stringify(options.body);
    }
    if (this.#closed) throw new KubeTransportError(`${method} ${path}: the client is closed`);
    try {
      // undici's request(), not fetch(): the same connection pool without WHATWG
      // Request/Response/Headers objects and web streams around every call (ADR 0124).
      return await undiciRequest(ctx.url, {
        method,
        headers,
        body,
        ...(ctx.dispatcher === undefined ? {} : { dispatcher: ctx.dispatcher }),
        signal: options.signal,
      });
    } catch (err) {
      throw transportError(method, path, err, deadline);
    }
  }
}

/**
 * The error for a failed answer: its `Status` (reason and message) when the body is one;
 * otherwise, as from a proxy in front of the API server (the aggregator's plain "service
 * unavailable"), the body's text is the message.
 */
function apiError(code: number, text: string, method: KubeMethod, path: string): KubeApiError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const status = statusBody.safeParse(body);
  const reason = status.success ? (status.data.reason ?? 'Unknown') : 'Unknown';
  const message = status.success ? (status.data.message ?? text) : text.trim();
  return new KubeApiError(code, reason, message, { method, path });
}

function transportError(method: KubeMethod, path: string, err: unknown, deadline: AbortSignal): KubeTransportError {
  if (deadline.aborted) return new KubeTimeoutError(`${method} ${path}: no answer before the request deadline`, { cause: err });
  return new KubeTransportError(`${method} ${path} failed`, { cause: err });
}

function dispatchLine(line: string, handlers: { onEvent: (event: unknown) => void; onBadLine: (line: string) => void }): void {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    handlers.onBadLine(line);
    return;
  }
  handlers.onEvent(value);
}

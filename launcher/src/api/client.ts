// A typed client of the launcher HTTP API, for the operator. fetch-based; call `info()`
// first to learn which API versions the launcher speaks.
import type { z } from 'zod';
import {
  ActionResponseSchema,
  ErrorBodySchema,
  InfoSchema,
  LAUNCHER_API_VERSIONS,
  LauncherEventSchema,
  StatusSchema,
} from './status.ts';
import type { ActionBody, ActionResponse, ErrorBody, Info, LauncherEvent, LifecycleAction, Status } from './status.ts';

export class LauncherClientError extends Error {
  override name = 'LauncherClientError';
}

/** The launcher answered with an error status. */
export class LauncherHttpError extends LauncherClientError {
  override name = 'LauncherHttpError';
  readonly status: number;
  readonly body: ErrorBody | undefined;
  constructor(method: string, path: string, status: number, body: ErrorBody | undefined) {
    super(`${method} ${path}: HTTP ${status}${body === undefined ? '' : ` ${body.error.code}: ${body.error.message}`}`);
    this.status = status;
    this.body = body;
  }
}

/** The launcher could not be reached (connection refused, reset, timeout). */
export class LauncherUnreachableError extends LauncherClientError {
  override name = 'LauncherUnreachableError';
}

/** The launcher answered with something that does not match the API schemas. */
export class LauncherProtocolError extends LauncherClientError {
  override name = 'LauncherProtocolError';
}

/** The launcher speaks none of the API versions this client knows. */
export class LauncherVersionError extends LauncherClientError {
  override name = 'LauncherVersionError';
}

export interface LauncherClientOptions {
  /** e.g. `http://10.244.1.7:8443` */
  baseUrl: string;
  token: string;
  /** Per-request timeout (not applied to the event stream). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class LauncherClient {
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  #negotiated: Promise<Info> | undefined;

  constructor(options: LauncherClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = options.fetch ?? fetch;
  }

  /**
   * GET /v1/info; rejects with LauncherVersionError when the launcher speaks no known
   * version. The other calls negotiate through it once before their first request.
   */
  async info(): Promise<Info> {
    const info = await this.#call('GET', '/v1/info', undefined, InfoSchema);
    if (!info.apiVersions.some((v) => (LAUNCHER_API_VERSIONS as readonly string[]).includes(v))) {
      throw new LauncherVersionError(`launcher speaks ${info.apiVersions.join(', ')}; this client speaks ${LAUNCHER_API_VERSIONS.join(', ')}`);
    }
    this.#negotiated = Promise.resolve(info);
    return info;
  }

  async status(): Promise<Status> {
    await this.#negotiate();
    return this.#call('GET', '/v1/status', undefined, StatusSchema);
  }

  async action<A extends LifecycleAction>(action: A, body: ActionBody<A> = {} as ActionBody<A>): Promise<ActionResponse> {
    await this.#negotiate();
    return this.#call('POST', `/v1/actions/${action}`, body, ActionResponseSchema);
  }

  /** GET /v1/events: the current status first, then every change, until `signal` aborts or the stream ends. */
  async *events(signal?: AbortSignal): AsyncGenerator<LauncherEvent> {
    await this.#negotiate();
    const response = await this.#request('GET', '/v1/events', undefined, signal);
    if (response.body === null) throw new LauncherProtocolError('event stream has no body');
    const decoder = new TextDecoder();
    let rest = '';
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        rest += decoder.decode(chunk, { stream: true });
        let nl = rest.indexOf('\n');
        while (nl >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          if (line !== '') yield parseWith(LauncherEventSchema, line, 'event');
          nl = rest.indexOf('\n');
        }
      }
    } catch (err) {
      if (signal?.aborted === true) return;
      if (err instanceof LauncherClientError) throw err;
      throw new LauncherUnreachableError(`event stream broke: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The launcher's info, fetched once (again after a failure). */
  #negotiate(): Promise<Info> {
    this.#negotiated ??= this.info().catch((err: unknown) => {
      this.#negotiated = undefined;
      throw err;
    });
    return this.#negotiated;
  }

  async #call<S extends z.ZodType>(method: string, path: string, body: unknown, schema: S): Promise<z.infer<S>> {
    const response = await this.#request(method, path, body, AbortSignal.timeout(this.#timeoutMs));
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new LauncherUnreachableError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    return parseWith(schema, text, `${method} ${path}`);
  }

  async #request(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    let response: Response;
    try {
      response = await this.#fetch(`${this.#baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      throw new LauncherUnreachableError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      const parsed = ErrorBodySchema.safeParse(safeJson(text));
      throw new LauncherHttpError(method, path, response.status, parsed.success ? parsed.data : undefined);
    }
    return response;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseWith<S extends z.ZodType>(schema: S, text: string, what: string): z.infer<S> {
  const parsed = schema.safeParse(safeJson(text));
  if (!parsed.success) throw new LauncherProtocolError(`${what}: unexpected response: ${parsed.error.message}`);
  return parsed.data;
}

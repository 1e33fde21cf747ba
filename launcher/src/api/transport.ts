// The HTTP transport both launcher API clients share: bearer token, JSON bodies,
// zod-validated answers, newline-delimited JSON streams, and the typed errors.
import type { z } from 'zod';
import { ErrorBodySchema, type ErrorBody } from './status.ts';

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

export interface LauncherClientOptions {
  /** e.g. `http://10.244.1.7:8443` */
  baseUrl: string;
  token: string;
  /** Per-request timeout (not applied to event streams). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** The longest event-stream line accepted (a status line is a few KiB). */
export const MAX_STREAM_LINE_CHARS = 1024 * 1024;

export class LauncherTransport {
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: LauncherClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = options.fetch ?? fetch;
  }

  /** One request and its validated answer, within the per-request timeout (and `signal`). */
  async call<S extends z.ZodType>(method: string, path: string, body: unknown, schema: S, signal?: AbortSignal): Promise<z.infer<S>> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const response = await this.#request(method, path, body, signal === undefined ? timeout : AbortSignal.any([signal, timeout]));
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new LauncherUnreachableError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    return parseWith(schema, text, `${method} ${path}`);
  }

  /** GET `path` as a newline-delimited JSON stream until `signal` aborts or the stream ends. */
  async *stream<S extends z.ZodType>(path: string, schema: S, what: string, signal?: AbortSignal): AsyncGenerator<z.infer<S>> {
    const response = await this.#request('GET', path, undefined, signal);
    if (response.body === null) throw new LauncherProtocolError(`${what} stream has no body`);
    const decoder = new TextDecoder();
    let rest = '';
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        rest += decoder.decode(chunk, { stream: true });
        let nl = rest.indexOf('\n');
        while (nl >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          if (line !== '') yield parseWith(schema, line, what);
          nl = rest.indexOf('\n');
        }
        // The launcher may be in a hostile guest's hands: a line without end is refused, not buffered.
        if (rest.length > MAX_STREAM_LINE_CHARS) throw new LauncherProtocolError(`${what} stream sent a line longer than ${MAX_STREAM_LINE_CHARS} characters`);
      }
    } catch (err) {
      if (signal?.aborted === true) return;
      if (err instanceof LauncherClientError) throw err;
      throw new LauncherUnreachableError(`${what} stream broke: ${(err as Error).message}`, { cause: err });
    }
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

// A typed client of the launcher's migration endpoints, for the operator (and for a
// source launcher reading its target's resume time). Same transport and errors as
// LauncherClient: bearer token, JSON, zod-validated answers.
import type { z } from 'zod';
import { LauncherHttpError, LauncherProtocolError, LauncherUnreachableError, type LauncherClientOptions } from './client.ts';
import { ErrorBodySchema } from './status.ts';
import {
  IncomingMigrationStatusSchema,
  MigrationEventSchema,
  SourceMigrationStatusSchema,
  type IncomingMigrationStatus,
  type MigrationEvent,
  type PrepareIncomingRequestInput,
  type SourceMigrationStatus,
  type StartMigrationRequestInput,
} from './migration.ts';

export class MigrationClient {
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

  /** Source: starts a migration (202); 409 when one runs or the VM cannot migrate now. */
  start(request: StartMigrationRequestInput): Promise<SourceMigrationStatus> {
    return this.#call('POST', '/v1/migrations', request, SourceMigrationStatusSchema);
  }

  /** Source: the current (or last) migration. */
  current(): Promise<SourceMigrationStatus> {
    return this.#call('GET', '/v1/migrations/current', undefined, SourceMigrationStatusSchema);
  }

  /** Source: cancels the running migration; 409 when it is past the point of return. */
  cancel(): Promise<SourceMigrationStatus> {
    return this.#call('DELETE', '/v1/migrations/current', undefined, SourceMigrationStatusSchema);
  }

  /** Source: progress events of the current migration, ending with its result. */
  async *events(signal?: AbortSignal): AsyncGenerator<MigrationEvent> {
    const response = await this.#request('GET', '/v1/migrations/current/events', undefined, signal);
    if (response.body === null) throw new LauncherProtocolError('migration event stream has no body');
    const decoder = new TextDecoder();
    let rest = '';
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        rest += decoder.decode(chunk, { stream: true });
        let nl = rest.indexOf('\n');
        while (nl >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          if (line !== '') yield parse(MigrationEventSchema, line, 'migration event');
          nl = rest.indexOf('\n');
        }
      }
    } catch (err) {
      if (signal?.aborted === true) return;
      if (err instanceof LauncherProtocolError) throw err;
      throw new LauncherUnreachableError(`migration event stream broke: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Target: starts listening for the incoming migration; answers with address and port. */
  prepareIncoming(request: PrepareIncomingRequestInput = {}): Promise<IncomingMigrationStatus> {
    return this.#call('POST', '/v1/migrations/incoming', request, IncomingMigrationStatusSchema);
  }

  /** Target: the incoming side's phase and RESUME time. */
  incoming(signal?: AbortSignal): Promise<IncomingMigrationStatus> {
    return this.#call('GET', '/v1/migrations/incoming', undefined, IncomingMigrationStatusSchema, signal);
  }

  async #call<S extends z.ZodType>(method: string, path: string, body: unknown, schema: S, signal?: AbortSignal): Promise<z.infer<S>> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const response = await this.#request(method, path, body, signal === undefined ? timeout : AbortSignal.any([signal, timeout]));
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw new LauncherUnreachableError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    return parse(schema, text, `${method} ${path}`);
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
      const parsed = ErrorBodySchema.safeParse(json(text));
      throw new LauncherHttpError(method, path, response.status, parsed.success ? parsed.data : undefined);
    }
    return response;
  }
}

function json(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parse<S extends z.ZodType>(schema: S, text: string, what: string): z.infer<S> {
  const parsed = schema.safeParse(json(text));
  if (!parsed.success) throw new LauncherProtocolError(`${what}: unexpected response: ${parsed.error.message}`);
  return parsed.data;
}

// A typed client of the launcher HTTP API, for the operator. fetch-based; call `info()`
// first to learn which API versions the launcher speaks.
import { ActionResponseSchema, InfoSchema, LAUNCHER_API_VERSIONS, LauncherEventSchema, StatusSchema } from './status.ts';
import type { ActionBody, ActionResponse, Info, LauncherEvent, LifecycleAction, Status } from './status.ts';
import { LauncherClientError, LauncherTransport, type LauncherClientOptions } from './transport.ts';

export { LauncherClientError, LauncherHttpError, LauncherProtocolError, LauncherUnreachableError, type LauncherClientOptions } from './transport.ts';

/** The launcher speaks none of the API versions this client knows. */
export class LauncherVersionError extends LauncherClientError {
  override name = 'LauncherVersionError';
}

export class LauncherClient {
  readonly #http: LauncherTransport;
  #negotiated: Promise<Info> | undefined;

  constructor(options: LauncherClientOptions) {
    this.#http = new LauncherTransport(options);
  }

  /**
   * GET /v1/info; rejects with LauncherVersionError when the launcher speaks no known
   * version. The other calls negotiate through it once before their first request.
   */
  async info(): Promise<Info> {
    const info = await this.#http.call('GET', '/v1/info', undefined, InfoSchema);
    if (!info.apiVersions.some((v) => (LAUNCHER_API_VERSIONS as readonly string[]).includes(v))) {
      throw new LauncherVersionError(`launcher speaks ${info.apiVersions.join(', ')}; this client speaks ${LAUNCHER_API_VERSIONS.join(', ')}`);
    }
    this.#negotiated = Promise.resolve(info);
    return info;
  }

  async status(): Promise<Status> {
    await this.#negotiate();
    return this.#http.call('GET', '/v1/status', undefined, StatusSchema);
  }

  async action<A extends LifecycleAction>(action: A, body: ActionBody<A> = {} as ActionBody<A>): Promise<ActionResponse> {
    await this.#negotiate();
    return this.#http.call('POST', `/v1/actions/${action}`, body, ActionResponseSchema);
  }

  /** GET /v1/events: the current status first, then every change, until `signal` aborts or the stream ends. */
  async *events(signal?: AbortSignal): AsyncGenerator<LauncherEvent> {
    await this.#negotiate();
    yield* this.#http.stream('/v1/events', LauncherEventSchema, 'event', signal);
  }

  /** The launcher's info, fetched once (again after a failure). */
  #negotiate(): Promise<Info> {
    this.#negotiated ??= this.info().catch((err: unknown) => {
      this.#negotiated = undefined;
      throw err;
    });
    return this.#negotiated;
  }
}

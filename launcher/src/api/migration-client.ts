// A typed client of the launcher's migration endpoints, for the operator (and for a
// source launcher reading its target's resume time). Same transport and errors as
// LauncherClient: bearer token, JSON, zod-validated answers.
import { LauncherTransport, type LauncherClientOptions } from './transport.ts';
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
  readonly #http: LauncherTransport;

  constructor(options: LauncherClientOptions) {
    this.#http = new LauncherTransport(options);
  }

  /** Source: starts a migration (202); 409 when one runs or the VM cannot migrate now. */
  start(request: StartMigrationRequestInput): Promise<SourceMigrationStatus> {
    return this.#http.call('POST', '/v1/migrations', request, SourceMigrationStatusSchema);
  }

  /** Source: the current (or last) migration. */
  current(): Promise<SourceMigrationStatus> {
    return this.#http.call('GET', '/v1/migrations/current', undefined, SourceMigrationStatusSchema);
  }

  /** Source: cancels the running migration; 409 when it is past the point of return. */
  cancel(): Promise<SourceMigrationStatus> {
    return this.#http.call('DELETE', '/v1/migrations/current', undefined, SourceMigrationStatusSchema);
  }

  /** Source: progress events of the current migration, ending with its result. */
  events(signal?: AbortSignal): AsyncGenerator<MigrationEvent> {
    return this.#http.stream('/v1/migrations/current/events', MigrationEventSchema, 'migration event', signal);
  }

  /** Target: starts listening for the incoming migration; answers with address and port. */
  prepareIncoming(request: PrepareIncomingRequestInput): Promise<IncomingMigrationStatus> {
    return this.#http.call('POST', '/v1/migrations/incoming', request, IncomingMigrationStatusSchema);
  }

  /** Target: the incoming side's phase and RESUME time. */
  incoming(signal?: AbortSignal): Promise<IncomingMigrationStatus> {
    return this.#http.call('GET', '/v1/migrations/incoming', undefined, IncomingMigrationStatusSchema, signal);
  }
}

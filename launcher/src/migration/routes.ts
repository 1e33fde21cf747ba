// The migration endpoints of the launcher API v1:
//   POST   /v1/migrations                  source: start (202 + status)
//   GET    /v1/migrations/current          source: progress, then the result
//   DELETE /v1/migrations/current          source: cancel (409 once post-copy began)
//   GET    /v1/migrations/current/events   source: NDJSON progress events, ending with the result
//   POST   /v1/migrations/incoming         target: listen; answers with address and port
//   GET    /v1/migrations/incoming         target: phase and RESUME time
import type { ServerResponse } from 'node:http';
import { IncomingMigrationStatusSchema, PrepareIncomingRequestSchema, StartMigrationRequestSchema, type MigrationEvent } from '../api/migration.ts';
import { HttpError } from '../http/errors.ts';
import type { ApiServer } from '../http/server.ts';
import { MigrationConflictError, MigrationRequestError, type MigrationController } from './controller.ts';
import type { SourceMigration } from './source.ts';

function mapError(err: unknown): never {
  if (err instanceof MigrationConflictError) throw new HttpError(409, 'Conflict', err.message);
  if (err instanceof MigrationRequestError) throw new HttpError(400, 'BadRequest', err.message);
  throw err;
}

function requireOutgoing(controller: MigrationController): SourceMigration {
  const migration = controller.outgoing;
  if (migration === undefined) throw new HttpError(404, 'NotFound', 'no migration has been started on this launcher');
  return migration;
}

/** Streams the migration's events: its latest progress first, then every event until the result. */
function streamEvents(migration: SourceMigration, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  const write = (event: MigrationEvent): void => {
    res.write(`${JSON.stringify(event)}\n`);
    if (event.type === 'result') res.end();
  };
  const status = migration.status();
  if (status.result !== null) {
    write({ type: 'result', result: status.result });
    return;
  }
  if (status.progress !== null) write({ type: 'progress', progress: status.progress });
  const unsubscribe = migration.subscribe(write);
  res.once('close', unsubscribe);
}

export function registerMigrationRoutes(server: ApiServer, controller: MigrationController): void {
  server.route('POST', '/v1/migrations', async ({ body }) => {
    const request = await body(StartMigrationRequestSchema);
    try {
      return { status: 202, body: controller.startOutgoing(request) };
    } catch (err) {
      return mapError(err);
    }
  });
  server.route('GET', '/v1/migrations/current', () => Promise.resolve({ status: 200, body: requireOutgoing(controller).status() }));
  server.route('DELETE', '/v1/migrations/current', () => {
    requireOutgoing(controller);
    try {
      return Promise.resolve({ status: 202, body: controller.cancelOutgoing() });
    } catch (err) {
      return mapError(err);
    }
  });
  server.route('GET', '/v1/migrations/current/events', ({ res }) => {
    streamEvents(requireOutgoing(controller), res);
    return Promise.resolve(undefined);
  });
  server.route('POST', '/v1/migrations/incoming', async ({ body }) => {
    const request = await body(PrepareIncomingRequestSchema);
    try {
      const status = await controller.prepareIncoming(request);
      return { status: 200, body: IncomingMigrationStatusSchema.parse(status) };
    } catch (err) {
      return mapError(err);
    }
  });
  server.route('GET', '/v1/migrations/incoming', () => {
    const incoming = controller.incoming;
    if (incoming === undefined) throw new HttpError(404, 'NotFound', 'no incoming migration has been prepared');
    return Promise.resolve({ status: 200, body: incoming.status() });
  });
}

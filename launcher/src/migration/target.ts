// The target side of a live migration. QEMU was started with `-incoming defer` on
// the same (shared) disk files; this sets the capabilities the source will use
// (QEMU requires `postcopy-ram` on both ends), starts listening with
// `migrate-incoming`, reports the address and port it listens on, and follows the
// incoming stream until the guest runs here (RESUME) or the stream fails.
import type { Logger } from 'pino';
import type { IncomingMigrationPhase, IncomingMigrationStatus } from '../api/migration.ts';
import { eventTimeMicros, listeningPort, QueryMigrateSchema } from './progress.ts';
import { emptyReturn, migrationEventData, setCapabilities, tcpUri, type MigrationQmp, type MigrationQmpEvent } from './qmp-port.ts';

export interface IncomingMigrationOptions {
  readonly qmp: MigrationQmp;
  readonly logger: Logger;
  /** Address to listen on: the pod's own address (never a wildcard in a shared network). */
  readonly host: string;
  /** 0 lets the kernel pick a free port; the chosen one is reported. */
  readonly port: number;
  /** Must match the source's policy: QEMU needs postcopy-ram on both sides. */
  readonly postCopy: boolean;
}

export class IncomingMigrationError extends Error {
  override name = 'IncomingMigrationError';
}

export class IncomingMigration {
  readonly #qmp: MigrationQmp;
  readonly #log: Logger;
  readonly #host: string;
  readonly #postCopy: boolean;
  #port: number;
  #phase: IncomingMigrationPhase = 'Listening';
  #resumedAtMicros: number | null = null;
  #message: string | undefined;
  #settle: ((phase: IncomingMigrationPhase) => void) | undefined;
  readonly #done: Promise<IncomingMigrationPhase>;
  readonly #onQmpEvent = (event: MigrationQmpEvent): void => this.#handleEvent(event);

  constructor(options: IncomingMigrationOptions) {
    this.#qmp = options.qmp;
    this.#log = options.logger.child({ component: 'incoming-migration' });
    this.#host = options.host;
    this.#port = options.port;
    this.#postCopy = options.postCopy;
    this.#done = new Promise((resolve) => {
      this.#settle = resolve;
    });
  }

  /** Starts listening; resolves with the address and port once QEMU accepts connections. */
  async listen(): Promise<IncomingMigrationStatus> {
    this.#qmp.on('event', this.#onQmpEvent);
    try {
      await setCapabilities(this.#qmp, { events: true, 'postcopy-ram': this.#postCopy });
      await this.#qmp.execute('migrate-incoming', { uri: tcpUri(this.#host, this.#port) }, emptyReturn);
      const info = await this.#qmp.execute('query-migrate', undefined, QueryMigrateSchema);
      const port = listeningPort(info) ?? (this.#port === 0 ? null : this.#port);
      if (port === null) throw new IncomingMigrationError('QEMU did not report the port it listens on');
      this.#port = port;
    } catch (err) {
      this.#fail(`could not listen for the migration: ${(err as Error).message}`);
      throw err;
    }
    this.#log.info({ host: this.#host, port: this.#port, postCopy: this.#postCopy }, 'waiting for the incoming migration');
    return this.status();
  }

  status(): IncomingMigrationStatus {
    return {
      phase: this.#phase,
      host: this.#host,
      port: this.#port === 0 ? 1 : this.#port,
      postCopy: this.#postCopy,
      resumedAtMicros: this.#resumedAtMicros,
      ...(this.#message === undefined ? {} : { message: this.#message }),
    };
  }

  /** Resolves when the incoming migration has succeeded (guest state fully here) or failed. */
  done(): Promise<IncomingMigrationPhase> {
    return this.#done;
  }

  /** The QEMU process ended (or the session was lost) before the migration finished. */
  abandon(message: string): void {
    if (this.#phase === 'Succeeded' || this.#phase === 'Failed') return;
    this.#fail(message);
  }

  #handleEvent(event: MigrationQmpEvent): void {
    if (event.event === 'RESUME') {
      this.#resumedAtMicros ??= eventTimeMicros(event.timestamp);
      this.#log.info({ resumedAtMicros: this.#resumedAtMicros }, 'guest resumed on the target');
      return;
    }
    if (event.event !== 'MIGRATION') return;
    const data = migrationEventData.safeParse(event.data);
    if (!data.success) return;
    const status = data.data.status;
    if (status === 'active' || status === 'postcopy-active') {
      if (this.#phase === 'Listening') this.#phase = 'Receiving';
    } else if (status === 'completed') {
      this.#phase = 'Succeeded';
      // Keep listening: in post-copy the RESUME came earlier, in pre-copy it may follow.
      this.#settle?.('Succeeded');
    } else if (status === 'failed' || status === 'cancelled') {
      this.#fail(`incoming migration ${status}`);
    }
  }

  #fail(message: string): void {
    this.#phase = 'Failed';
    this.#message = message;
    this.#qmp.off('event', this.#onQmpEvent);
    this.#log.warn({ message }, 'incoming migration failed');
    this.#settle?.('Failed');
  }
}

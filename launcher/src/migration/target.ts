// The target side of a live migration. QEMU was started with `-incoming defer` on
// the same (shared) disk files; this opens the migration's gate on the pod address
// (incoming-gate.ts: TLS with the migration's server certificate, only a client
// certificate from the same per-migration CA gets through, and only one), sets the
// capabilities the source will use (QEMU requires `postcopy-ram` on both ends), has
// QEMU listen with `migrate-incoming` on a unix socket in the launcher's private
// migration directory that only the gate connects to, reports the gate's address and
// port, and follows the incoming stream until the guest runs here (RESUME) or the
// stream fails. The gate and the socket go when the incoming migration ends.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { IncomingMigrationPhase, IncomingMigrationStatus } from '../api/migration.ts';
import type { IncomingGate } from './incoming-gate.ts';
import { eventTimeMicros } from './progress.ts';
import { emptyReturn, migrationEventData, setCapabilities, type MigrationQmp, type MigrationQmpEvent } from './qmp-port.ts';
import type { MigrationTlsMaterial } from './tls.ts';

export interface IncomingMigrationOptions {
  readonly qmp: MigrationQmp;
  readonly logger: Logger;
  /** Address to listen on: the pod's own address (never a wildcard in a shared network). */
  readonly host: string;
  /** 0 lets the kernel pick a free port; the chosen one is reported. */
  readonly port: number;
  /** Must match the source's policy: QEMU needs postcopy-ram on both sides. */
  readonly postCopy: boolean;
  /** The migration's CA certificate and this target's server certificate and key (kept in memory only). */
  readonly tls: MigrationTlsMaterial;
  /** Private directory under the launcher's state dir: QEMU's local migration socket goes there. */
  readonly tlsDir: string;
  /** The gate's limit for a TLS handshake and the first byte after it. */
  readonly handshakeTimeoutMs?: number;
}

export class IncomingMigrationError extends Error {
  override name = 'IncomingMigrationError';
}

export class IncomingMigration {
  readonly #qmp: MigrationQmp;
  readonly #log: Logger;
  readonly #host: string;
  readonly #postCopy: boolean;
  readonly #tlsMaterial: MigrationTlsMaterial;
  readonly #tlsDir: string;
  readonly #handshakeTimeoutMs: number | undefined;
  #gate: IncomingGate | undefined;
  #socketDir: string | undefined;
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
    this.#tlsMaterial = options.tls;
    this.#tlsDir = options.tlsDir;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs;
    this.#done = new Promise((resolve) => {
      this.#settle = resolve;
    });
    void this.#done.then((phase) => this.#closeGate(phase));
  }

  /** Starts listening; resolves with the address and port once the gate and QEMU accept connections. */
  async listen(): Promise<IncomingMigrationStatus> {
    this.#qmp.on('event', this.#onQmpEvent);
    try {
      await mkdir(this.#tlsDir, { recursive: true, mode: 0o700 });
      this.#socketDir = await mkdtemp(path.join(this.#tlsDir, 'incoming-'));
      const qemuSocket = path.join(this.#socketDir, 'qemu.sock');
      // node:tls is loaded by the first incoming migration, not by every launcher (~4 MiB resident: ADR 0111).
      const { IncomingGate } = await import('./incoming-gate.ts');
      this.#gate = await IncomingGate.open({
        host: this.#host,
        port: this.#port,
        tls: this.#tlsMaterial,
        qemuSocket,
        logger: this.#log,
        ...(this.#handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#handshakeTimeoutMs }),
      });
      this.#port = this.#gate.port;
      await setCapabilities(this.#qmp, { events: true, 'postcopy-ram': this.#postCopy });
      await this.#qmp.execute('migrate-incoming', { uri: `unix:${qemuSocket}` }, emptyReturn);
    } catch (err) {
      this.#fail(`could not listen for the migration: ${(err as Error).message}`);
      throw err;
    }
    this.#log.info({ host: this.#host, port: this.#port, postCopy: this.#postCopy, tls: true }, 'waiting for the incoming migration');
    return this.status();
  }

  status(): IncomingMigrationStatus {
    return {
      phase: this.#phase,
      host: this.#host,
      port: this.#port === 0 ? 1 : this.#port,
      postCopy: this.#postCopy,
      resumedAtMicros: this.#resumedAtMicros,
      refusedConnections: this.#gate?.refused ?? 0,
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

  /** Once the outcome is known nobody else may connect; after a failure the stream is cut too. */
  async #closeGate(phase: IncomingMigrationPhase): Promise<void> {
    if (phase === 'Succeeded') this.#gate?.stopListening();
    else this.#gate?.close();
    if (this.#socketDir !== undefined) await rm(this.#socketDir, { recursive: true, force: true }).catch(() => undefined);
  }

  #fail(message: string): void {
    this.#phase = 'Failed';
    this.#message = message;
    this.#qmp.off('event', this.#onQmpEvent);
    this.#log.warn({ message }, 'incoming migration failed');
    this.#settle?.('Failed');
  }
}

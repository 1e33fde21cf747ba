// The target's migration port (ADR 0056). QEMU 7.2 runs the server side of a TLS
// handshake on a blocking socket inside its main loop: one idle TCP connection to a
// QEMU migration listener freezes that QEMU (QMP included) until the stranger hangs
// up. So QEMU never listens on the network: it listens on a unix socket in the
// launcher's private directory, and this gate owns the pod-facing port. The gate is a
// TLS server (node:tls, non-blocking) that demands a client certificate chaining to
// the migration's CA (OpenSSL also checks its clientAuth purpose), bounds the
// handshake and the wait for the first byte, and relays to QEMU the plaintext of
// exactly one verified connection — the first that sends data; from then on it
// accepts nothing more. A connection that fails any check is dropped without QEMU
// ever seeing it, so a stranger can neither feed QEMU a stream nor stall it.
import { constants } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { MigrationTlsMaterial } from './tls.ts';

export interface IncomingGateOptions {
  /** The pod's own address (never a wildcard). */
  readonly host: string;
  /** 0 lets the kernel pick. */
  readonly port: number;
  /** The migration's CA certificate and this target's server certificate and key. */
  readonly tls: MigrationTlsMaterial;
  /** The unix socket QEMU listens on (`migrate-incoming unix:…`). */
  readonly qemuSocket: string;
  readonly logger: Logger;
  /** Limit for the TLS handshake and, after it, for the first byte of the stream. */
  readonly handshakeTimeoutMs?: number;
  /** Connections in handshake at once; more are refused at accept. */
  readonly maxPendingConnections?: number;
}

export class IncomingGateError extends Error {
  override name = 'IncomingGateError';
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_PENDING = 128;

export class IncomingGate {
  readonly #server: tls.Server;
  readonly #log: Logger;
  readonly #qemuSocket: string;
  readonly #firstByteTimeoutMs: number;
  readonly #pending = new Set<net.Socket>();
  #admitted: { client: tls.TLSSocket; qemu: net.Socket } | undefined;
  #refused = 0;
  #port = 0;

  private constructor(options: IncomingGateOptions) {
    this.#log = options.logger.child({ component: 'incoming-gate' });
    this.#qemuSocket = options.qemuSocket;
    this.#firstByteTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.#server = tls.createServer(
      {
        ca: options.tls.caCert,
        cert: options.tls.cert,
        key: options.tls.key,
        requestCert: true,
        rejectUnauthorized: true,
        // TLS 1.2 without session tickets: nothing reaches the source after the handshake.
        // A TLS 1.3 server sends NewSessionTicket messages afterwards that QEMU never
        // reads; QEMU then closes with unread data, the kernel answers with a reset, and
        // a reset discards the tail of the stream still queued here (the device state).
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        secureOptions: constants.SSL_OP_NO_TICKET,
        handshakeTimeout: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      },
      (socket) => this.#onVerified(socket),
    );
    this.#server.maxConnections = options.maxPendingConnections ?? DEFAULT_MAX_PENDING;
    this.#server.on('tlsClientError', (err, socket) => this.#refuse(socket, 'handshake failed', err));
  }

  /** Listens on host:port; resolves once bound. */
  static async open(options: IncomingGateOptions): Promise<IncomingGate> {
    const gate = new IncomingGate(options);
    await new Promise<void>((resolve, reject) => {
      gate.#server.once('error', reject);
      gate.#server.listen(options.port, options.host, () => {
        gate.#server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new IncomingGateError(`cannot listen for the migration on ${options.host}:${options.port}: ${(err as Error).message}`, { cause: err });
    });
    gate.#port = (gate.#server.address() as net.AddressInfo).port;
    gate.#server.on('error', (err) => gate.#log.error({ err }, 'migration gate failed'));
    return gate;
  }

  get port(): number {
    return this.#port;
  }

  /** Connections dropped so far (handshake failures, late or silent clients). */
  get refused(): number {
    return this.#refused;
  }

  /** Stops accepting; drops connections not admitted. The admitted stream, if any, lives on until either end closes. */
  stopListening(): void {
    if (this.#server.listening) this.#server.close();
    for (const socket of this.#pending) socket.destroy();
    this.#pending.clear();
  }

  /** Stops accepting and ends the admitted stream too. */
  close(): void {
    this.stopListening();
    this.#admitted?.client.destroy();
    this.#admitted?.qemu.destroy();
  }

  #refuse(socket: net.Socket, why: string, err?: Error): void {
    this.#refused++;
    this.#pending.delete(socket);
    // Strangers may knock as often as they like: one line each at debug, a count in the status.
    this.#log.debug({ why, remoteAddress: socket.remoteAddress, message: err?.message }, 'migration connection refused');
    socket.destroy();
  }

  #onVerified(socket: tls.TLSSocket): void {
    if (this.#admitted !== undefined) {
      this.#refuse(socket, 'a migration stream is already admitted');
      return;
    }
    this.#pending.add(socket);
    socket.on('error', () => undefined);
    const timer = setTimeout(() => this.#refuse(socket, 'no data after the handshake'), this.#firstByteTimeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      this.#pending.delete(socket);
    });
    socket.once('data', (first: Buffer) => {
      clearTimeout(timer);
      if (this.#admitted !== undefined) {
        this.#refuse(socket, 'a migration stream is already admitted');
        return;
      }
      socket.pause();
      this.#admit(socket, first);
    });
  }

  #admit(client: tls.TLSSocket, first: Buffer): void {
    this.#pending.delete(client);
    const qemu = net.connect(this.#qemuSocket);
    this.#admitted = { client, qemu };
    this.stopListening();
    const subject = client.getPeerCertificate().subject?.CN;
    this.#log.info({ remoteAddress: client.remoteAddress, peer: subject, refusedBefore: this.#refused }, 'migration stream admitted');
    qemu.on('error', (err) => {
      this.#log.warn({ err }, 'migration stream to QEMU failed');
      client.destroy();
      qemu.destroy();
    });
    // Whatever arrived before an error still goes to QEMU, which judges the stream itself.
    client.on('error', (err) => {
      this.#log.warn({ err }, 'migration stream from the source failed');
      qemu.end();
    });
    qemu.once('connect', () => {
      qemu.write(first);
      client.pipe(qemu);
      qemu.pipe(client);
    });
    // A clean close on one side ends the other only after what is queued has been written:
    // the last bytes of a migration stream are the device state.
    client.once('close', () => qemu.end());
    qemu.once('close', () => client.end());
  }
}

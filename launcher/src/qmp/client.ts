// A QMP client: explicit session start (greeting, then qmp_capabilities), one pending
// slot per command id, events routed apart from replies, typed errors, per-call timeouts.
import { EventEmitter, on } from 'node:events';
import net from 'node:net';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  QmpDisconnectedError,
  QmpExecuteError,
  QmpGreetingError,
  QmpNegotiationError,
  QmpProtocolError,
  QmpTimeoutError,
} from './errors.ts';
import { emptyReturnSchema, qmpGreetingSchema, qmpMessageSchema } from './messages.ts';
import type { QmpEvent, QmpGreeting, QmpMessage } from './messages.ts';

export interface QmpConnectOptions {
  /** Path of QEMU's QMP unix socket. */
  path: string;
  logger: Logger;
  /** How long to wait for the greeting and capabilities negotiation. */
  handshakeTimeoutMs?: number;
  /** Default per-command timeout. */
  commandTimeoutMs?: number;
  /** Opens the socket; tests may substitute another stream. */
  connect?: (path: string) => net.Socket;
}

export interface QmpExecuteOptions {
  timeoutMs?: number;
}

interface Pending {
  command: string;
  args: Readonly<Record<string, unknown>> | undefined;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface QmpClientEvents {
  event: [QmpEvent];
  disconnect: [QmpDisconnectedError];
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

export class QmpClient extends EventEmitter<QmpClientEvents> {
  readonly greeting: QmpGreeting;
  #socket: net.Socket;
  #log: Logger;
  #pending = new Map<string, Pending>();
  #nextId = 1;
  #closed: QmpDisconnectedError | undefined;
  #commandTimeoutMs: number;

  private constructor(socket: net.Socket, greeting: QmpGreeting, log: Logger, commandTimeoutMs: number) {
    super();
    this.#socket = socket;
    this.greeting = greeting;
    this.#log = log;
    this.#commandTimeoutMs = commandTimeoutMs;
  }

  /** Connects, reads the greeting, negotiates capabilities; resolves with a ready session. */
  static async connect(options: QmpConnectOptions): Promise<QmpClient> {
    const log = options.logger.child({ component: 'qmp' });
    const socket = (options.connect ?? ((p: string) => net.createConnection(p)))(options.path);
    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const lines = lineReader(socket);
    let client: QmpClient | undefined;
    try {
      const greeting = await readGreeting(socket, lines, handshakeTimeoutMs);
      client = new QmpClient(socket, greeting, log, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
      client.#start(lines);
      await client.execute('qmp_capabilities', undefined, emptyReturnSchema, { timeoutMs: handshakeTimeoutMs });
      log.debug({ version: greeting.QMP.version.qemu }, 'qmp session ready');
      return client;
    } catch (err) {
      socket.destroy();
      if (client !== undefined && !(err instanceof QmpGreetingError)) {
        throw new QmpNegotiationError(`qmp_capabilities failed: ${(err as Error).message}`, { cause: err });
      }
      throw err;
    }
  }

  get connected(): boolean {
    return this.#closed === undefined;
  }

  /** Runs a command and parses its `return` value with `schema`. */
  async execute<S extends z.ZodType>(
    command: string,
    args: Readonly<Record<string, unknown>> | undefined,
    schema: S,
    options: QmpExecuteOptions = {},
  ): Promise<z.infer<S>> {
    const raw = await this.#send(command, args, options.timeoutMs ?? this.#commandTimeoutMs);
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      throw new QmpProtocolError(`unexpected return of ${command}: ${parsed.error.message}`);
    }
    return parsed.data;
  }

  /** Events as an async iterator; ends when the session ends or `signal` aborts. */
  async *events(signal?: AbortSignal): AsyncGenerator<QmpEvent> {
    if (this.#closed !== undefined) return;
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    this.once('disconnect', stop);
    signal?.addEventListener('abort', stop, { once: true });
    try {
      for await (const [event] of on(this, 'event', { signal: ac.signal }) as AsyncIterable<[QmpEvent]>) {
        yield event;
      }
    } catch (err) {
      if (!(err instanceof Error && err.name === 'AbortError')) throw err;
    } finally {
      this.off('disconnect', stop);
      signal?.removeEventListener('abort', stop);
    }
  }

  /** Ends the session; pending commands fail with QmpDisconnectedError. */
  close(): void {
    this.#socket.end();
    this.#socket.destroy();
    this.#fail(new QmpDisconnectedError('QMP session closed by the client'));
  }

  #start(lines: LineReader): void {
    lines.onLine = (line) => this.#handleLine(line);
    for (const line of lines.buffered.splice(0)) this.#handleLine(line);
    this.#socket.on('close', () => this.#fail(new QmpDisconnectedError('QMP socket closed')));
    this.#socket.on('error', (err) => this.#fail(new QmpDisconnectedError(`QMP socket error: ${err.message}`, { cause: err })));
  }

  #send(command: string, args: Readonly<Record<string, unknown>> | undefined, timeoutMs: number): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const id = `kv-${this.#nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { command, args, resolve, reject, timer });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.#socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  #handleLine(line: string): void {
    let message: QmpMessage;
    try {
      const parsed = qmpMessageSchema.safeParse(JSON.parse(line));
      if (!parsed.success) throw new QmpProtocolError(parsed.error.message);
      message = parsed.data;
    } catch (err) {
      this.#log.warn({ err, line }, 'unparsable QMP message dropped');
      return;
    }
    if ('event' in message) {
      this.emit('event', message);
      return;
    }
    if ('QMP' in message) {
      this.#log.warn('unexpected second QMP greeting dropped');
      return;
    }
    this.#settle(message);
  }

  #settle(message: Exclude<QmpMessage, QmpEvent | QmpGreeting>): void {
    const id = message.id === undefined ? undefined : String(message.id);
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (id === undefined || pending === undefined) {
      this.#log.warn({ id }, 'QMP reply without a pending command dropped');
      return;
    }
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      pending.reject(new QmpExecuteError(pending.command, pending.args, message.error.class, message.error.desc));
    } else {
      pending.resolve(message.return);
    }
  }

  #fail(err: QmpDisconnectedError): void {
    if (this.#closed !== undefined) return;
    this.#closed = err;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new QmpDisconnectedError(`${err.message} while ${pending.command} was pending`, { cause: err }));
      this.#pending.delete(id);
    }
    this.emit('disconnect', err);
  }
}

interface LineReader {
  onLine: (line: string) => void;
  buffered: string[];
}

/** Splits the socket's byte stream into lines; lines arriving before a consumer is set are queued. */
function lineReader(socket: net.Socket): LineReader {
  let rest = '';
  const reader: LineReader = {
    buffered: [],
    onLine: (line) => reader.buffered.push(line),
  };
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    rest += chunk;
    let nl = rest.indexOf('\n');
    while (nl >= 0) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (line !== '') reader.onLine(line);
      nl = rest.indexOf('\n');
    }
  });
  return reader;
}

async function readGreeting(socket: net.Socket, lines: LineReader, timeoutMs: number): Promise<QmpGreeting> {
  const first = await new Promise<string>((resolve, reject) => {
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      fn();
    };
    const timer = setTimeout(() => done(() => reject(new QmpGreetingError(`no QMP greeting within ${timeoutMs} ms`))), timeoutMs);
    const onError = (err: Error): void => done(() => reject(new QmpGreetingError(`QMP socket error: ${err.message}`, { cause: err })));
    const onClose = (): void => done(() => reject(new QmpGreetingError('QMP socket closed before the greeting')));
    socket.on('error', onError);
    socket.on('close', onClose);
    const queued = lines.buffered.shift();
    if (queued !== undefined) {
      done(() => resolve(queued));
      return;
    }
    lines.onLine = (line) => {
      lines.onLine = (next) => lines.buffered.push(next);
      done(() => resolve(line));
    };
  });
  let json: unknown;
  try {
    json = JSON.parse(first);
  } catch (err) {
    throw new QmpGreetingError('QMP greeting is not JSON', { cause: err });
  }
  const parsed = qmpGreetingSchema.safeParse(json);
  if (!parsed.success) throw new QmpGreetingError(`not a QMP greeting: ${parsed.error.message}`);
  return parsed.data;
}

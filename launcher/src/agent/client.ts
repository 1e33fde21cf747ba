// A client for the QEMU guest agent on its virtio-serial channel (a unix socket QEMU
// serves). The agent answers one command at a time and without ids, and it comes and goes
// with the guest, so every session starts with guest-sync-delimited: a 0xFF byte flushes
// the agent's parser, and the answer (itself preceded by 0xFF) carries our random id, so
// stale answers from earlier sessions are recognised and dropped. The guest is not
// trusted: a line longer than `maxLineBytes` is never buffered whole — the waiting
// request fails with AgentLineTooLongError and the reader discards up to the next
// newline or 0xFF, so memory stays bounded whatever the guest writes.
import net from 'node:net';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  AgentCommandError,
  AgentDisconnectedError,
  AgentLineTooLongError,
  AgentProtocolError,
  AgentSyncError,
  AgentTimeoutError,
} from './errors.ts';
import {
  agentReplySchema,
  emptyObjectSchema,
  fsfreezeCountSchema,
  fsfreezeStatusSchema,
  guestExecSchema,
  guestExecStatusSchema,
  guestFsInfoSchema,
  guestHostNameSchema,
  guestInfoSchema,
  guestNetworkInterfacesSchema,
  guestOsInfoSchema,
  guestUsersSchema,
} from './messages.ts';
import type { GuestExecStatus, GuestFsInfo, GuestInfo, GuestNetworkInterfaces, GuestOsInfo, GuestUsers } from './messages.ts';

const DELIMITER = 0xff;
const NEWLINE = 0x0a;
/** The longest reply line accepted; real replies (interfaces, fsinfo, exec output) stay far below. */

/**
 * A guest-sync id: random in [1, 2^31 - 1), so an earlier session's stale answer is told
 * apart. It is no secret (the guest may answer anything), so it needs no OpenSSL
 * (ADR 0122).
 */
function syncId(): number {
  return 1 + Math.floor(Math.random() * (2 ** 31 - 2));
}
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

export interface AgentClientOptions {
  path: string;
  logger: Logger;
  syncTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** Longest line accepted from the agent (DEFAULT_MAX_LINE_BYTES). */
  maxLineBytes?: number;
  connect?: (path: string) => net.Socket;
}

export interface GuestExecRequest {
  path: string;
  args?: string[];
  env?: string[];
  captureOutput?: boolean;
}

type Waiter = (line: unknown, failure?: AgentDisconnectedError | AgentLineTooLongError) => void;

export class GuestAgentClient {
  #options: AgentClientOptions;
  #log: Logger;
  #socket: net.Socket | undefined;
  /** The start of a line not complete yet, as received (joined only once its newline arrives). */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** Inside an overlong line: bytes are dropped until a newline or 0xFF. */
  #discarding = false;
  #linesTooLong = 0;
  #waiter: Waiter | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #closedError: Error | undefined;

  constructor(options: AgentClientOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'guest-agent' });
  }

  /** Overlong lines seen on this client. */
  get linesTooLong(): number {
    return this.#linesTooLong;
  }

  get connected(): boolean {
    return this.#socket !== undefined && this.#closedError === undefined;
  }

  /** Opens the channel and synchronises with the agent; rejects with AgentSyncError when no agent answers. */
  async connect(): Promise<void> {
    const socket = (this.#options.connect ?? ((p: string) => net.createConnection(p)))(this.#options.path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err) => reject(new AgentDisconnectedError(`guest agent socket: ${err.message}`, { cause: err })));
    });
    this.#socket = socket;
    this.#closedError = undefined;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#onClose(err));
    socket.on('close', () => this.#onClose(new Error('socket closed')));
    try {
      await this.#sync();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  close(): void {
    this.#onClose(new Error('closed by the client'));
  }

  /** Runs one command and parses its return value. A timeout closes the channel (its stream is no longer aligned). */
  execute<S extends z.ZodType>(command: string, args: Record<string, unknown> | undefined, schema: S, timeoutMs?: number): Promise<z.infer<S>> {
    const run = async (): Promise<z.infer<S>> => {
      const raw = await this.#request(command, args, timeoutMs ?? this.#options.commandTimeoutMs ?? 10_000);
      const parsed = schema.safeParse(raw);
      if (!parsed.success) throw new AgentProtocolError(`unexpected return of ${command}: ${parsed.error.message}`);
      return parsed.data;
    };
    const result = this.#chain.then(run, run);
    this.#chain = result.catch(() => undefined);
    return result;
  }

  ping(): Promise<unknown> {
    return this.execute('guest-ping', undefined, emptyObjectSchema);
  }

  info(): Promise<GuestInfo> {
    return this.execute('guest-info', undefined, guestInfoSchema);
  }

  osInfo(): Promise<GuestOsInfo> {
    return this.execute('guest-get-osinfo', undefined, guestOsInfoSchema);
  }

  async hostName(): Promise<string> {
    return (await this.execute('guest-get-host-name', undefined, guestHostNameSchema))['host-name'];
  }

  networkInterfaces(): Promise<GuestNetworkInterfaces> {
    return this.execute('guest-network-get-interfaces', undefined, guestNetworkInterfacesSchema);
  }

  users(): Promise<GuestUsers> {
    return this.execute('guest-get-users', undefined, guestUsersSchema);
  }

  filesystems(): Promise<GuestFsInfo> {
    return this.execute('guest-get-fsinfo', undefined, guestFsInfoSchema);
  }

  fsfreezeFreeze(): Promise<number> {
    return this.execute('guest-fsfreeze-freeze', undefined, fsfreezeCountSchema, 60_000);
  }

  fsfreezeThaw(): Promise<number> {
    return this.execute('guest-fsfreeze-thaw', undefined, fsfreezeCountSchema, 60_000);
  }

  fsfreezeStatus(): Promise<'thawed' | 'frozen'> {
    return this.execute('guest-fsfreeze-status', undefined, fsfreezeStatusSchema);
  }

  /**
   * Asks the guest to power off (or halt/reboot). The agent sends no reply on success,
   * only on failure, so an error within `waitMs` rejects and silence resolves.
   */
  shutdown(mode: 'powerdown' | 'halt' | 'reboot' = 'powerdown', waitMs = 1000): Promise<void> {
    const run = async (): Promise<void> => {
      try {
        await this.#request('guest-shutdown', { mode }, waitMs);
      } catch (err) {
        if (err instanceof AgentTimeoutError) return;
        throw err;
      }
    };
    const result = this.#chain.then(run, run);
    this.#chain = result.catch(() => undefined);
    return result;
  }

  async exec(request: GuestExecRequest): Promise<number> {
    const args: Record<string, unknown> = { path: request.path, 'capture-output': request.captureOutput ?? false };
    if (request.args !== undefined) args.arg = request.args;
    if (request.env !== undefined) args.env = request.env;
    return (await this.execute('guest-exec', args, guestExecSchema)).pid;
  }

  execStatus(pid: number): Promise<GuestExecStatus> {
    return this.execute('guest-exec-status', { pid }, guestExecStatusSchema);
  }

  async #sync(): Promise<void> {
    const id = syncId();
    const socket = this.#requireSocket();
    const timeoutMs = this.#options.syncTimeoutMs ?? 3000;
    const answered = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new AgentSyncError(`no answer to guest-sync-delimited within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (line, closed) => {
        // No agent sends a megabyte without a newline before answering a sync: give up
        // now rather than read a flood until the sync timeout (the monitor retries later).
        if (closed !== undefined) {
          clearTimeout(timer);
          this.#waiter = undefined;
          reject(new AgentSyncError(`guest agent synchronisation failed: ${closed.message}`, { cause: closed }));
          return;
        }
        const reply = agentReplySchema.safeParse(line);
        if (!reply.success || !('return' in reply.data) || reply.data.return !== id) {
          this.#log.debug({ line: JSON.stringify(line).slice(0, 200) }, 'stale guest agent output dropped while synchronising');
          return;
        }
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve();
      };
    });
    socket.write(Buffer.from([DELIMITER]));
    socket.write(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`);
    await answered;
  }

  #request(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const socket = this.#requireSocket();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        this.#onClose(new Error(`no answer to ${command}`));
        reject(new AgentTimeoutError(`guest agent command ${command} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (line, closed) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        const reply = agentReplySchema.safeParse(line);
        if (closed !== undefined) {
          reject(closed);
        } else if (!reply.success) {
          reject(new AgentProtocolError(`unparsable answer to ${command}`));
        } else if ('error' in reply.data) {
          reject(new AgentCommandError(command, reply.data.error.class, reply.data.error.desc));
        } else {
          resolve(reply.data.return);
        }
      };
      const message = args === undefined ? { execute: command } : { execute: command, arguments: args };
      socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  #requireSocket(): net.Socket {
    if (this.#socket === undefined || this.#closedError !== undefined) {
      throw new AgentDisconnectedError('guest agent channel is not connected');
    }
    return this.#socket;
  }

  #onData(chunk: Buffer): void {
    let data = chunk;
    if (this.#discarding) {
      const end = Math.max(data.lastIndexOf(DELIMITER), data.indexOf(NEWLINE));
      if (end < 0) return;
      this.#discarding = false;
      data = data.subarray(end + 1);
    }
    // A 0xFF (the agent's answer to our resync byte) discards everything before it.
    const delim = data.lastIndexOf(DELIMITER);
    if (delim >= 0) {
      this.#dropPartial();
      data = data.subarray(delim + 1);
    }
    for (let nl = data.indexOf(NEWLINE); nl >= 0; nl = data.indexOf(NEWLINE)) {
      const length = this.#partialBytes + nl;
      const line = length > this.#maxLineBytes ? undefined : Buffer.concat([...this.#partial, data.subarray(0, nl)]).toString('utf8').trim();
      this.#dropPartial();
      data = data.subarray(nl + 1);
      if (line === undefined) this.#lineTooLong();
      else if (line !== '') this.#deliver(line);
    }
    if (data.length === 0) return;
    if (this.#partialBytes + data.length > this.#maxLineBytes) {
      this.#dropPartial();
      this.#discarding = true;
      this.#lineTooLong();
      return;
    }
    this.#partial.push(data);
    this.#partialBytes += data.length;
  }

  #dropPartial(): void {
    this.#partial = [];
    this.#partialBytes = 0;
  }

  get #maxLineBytes(): number {
    return this.#options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  #lineTooLong(): void {
    this.#linesTooLong++;
    const err = new AgentLineTooLongError(this.#maxLineBytes);
    // At debug: a guest sending without end must not flood the log (the monitor warns once).
    this.#log.debug({ err, count: this.#linesTooLong }, 'overlong guest agent line dropped');
    const waiter = this.#waiter;
    if (waiter !== undefined) waiter(undefined, err);
  }

  #deliver(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      this.#log.debug({ line: line.slice(0, 200) }, 'non-JSON guest agent output dropped');
      return;
    }
    if (this.#waiter === undefined) {
      this.#log.debug({ line: line.slice(0, 200) }, 'unsolicited guest agent output dropped');
      return;
    }
    this.#waiter(json);
  }

  #onClose(reason: Error): void {
    if (this.#closedError !== undefined || this.#socket === undefined) return;
    this.#closedError = reason;
    this.#socket.destroy();
    this.#dropPartial();
    this.#discarding = false;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter !== undefined) {
      waiter(undefined, new AgentDisconnectedError(`guest agent channel closed: ${reason.message}`, { cause: reason }));
    }
  }
}

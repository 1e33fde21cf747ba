// Minimal QMP and guest-agent sessions for the test guest's own tests: line-delimited
// JSON over QEMU's unix sockets, parsed with zod. Deliberately independent of the
// launcher's clients, so that the guest is proven with nothing of the product.
import { createConnection, type Socket } from 'node:net';
import { z } from 'zod';

export class MonitorError extends Error {
  override readonly name = 'MonitorError';
}

export class MonitorCommandError extends Error {
  override readonly name = 'MonitorCommandError';
  readonly errorClass: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`${command} failed: ${errorClass}: ${desc}`);
    this.errorClass = errorClass;
  }
}

const messageSchema = z
  .object({
    QMP: z.unknown().optional(),
    return: z.unknown().optional(),
    error: z.object({ class: z.string(), desc: z.string() }).optional(),
    event: z.string().optional(),
    data: z.record(z.string(), z.unknown()).optional(),
    id: z.union([z.string(), z.number()]).optional(),
  })
  .loose();
type Message = z.infer<typeof messageSchema>;

export interface MonitorEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  readonly receivedAt: number;
}

interface Waiter {
  readonly accept: (m: Message) => boolean;
  readonly resolve: (m: Message) => void;
  readonly reject: (err: Error) => void;
}

/** A unix-socket connection that yields parsed JSON messages. 0xFF sentinels are dropped. */
class JsonLines {
  private buffer = '';
  private readonly waiters = new Set<Waiter>();
  private closedError: Error | undefined;
  readonly events: MonitorEvent[] = [];
  private readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer += Buffer.from(chunk.filter((b) => b !== 0xff)).toString('utf8');
      this.drain();
    });
    socket.on('error', (err) => this.fail(new MonitorError(`socket error: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new MonitorError('socket closed')));
  }

  static open(socketPath: string, timeoutMs: number): Promise<JsonLines> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new MonitorError(`connect ${socketPath}: timeout`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new JsonLines(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new MonitorError(`connect ${socketPath}: ${err.message}`, { cause: err }));
      });
    });
  }

  private drain(): void {
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue; // the agent may echo garbage after a reset; only whole JSON lines count
      }
      const result = messageSchema.safeParse(parsed);
      if (!result.success) continue;
      this.dispatch(result.data);
    }
  }

  private dispatch(message: Message): void {
    if (message.event !== undefined) {
      this.events.push({ event: message.event, data: message.data ?? {}, receivedAt: Date.now() });
    }
    for (const waiter of this.waiters) {
      if (waiter.accept(message)) {
        this.waiters.delete(waiter);
        waiter.resolve(message);
        return;
      }
    }
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const waiter of this.waiters) waiter.reject(err);
    this.waiters.clear();
  }

  next(accept: (m: Message) => boolean, timeoutMs: number, what: string): Promise<Message> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new MonitorError(`${what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        accept,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.waiters.add(waiter);
    });
  }

  send(message: Record<string, unknown>): void {
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  close(): void {
    this.socket.destroy();
  }
}

function unwrap(command: string, message: Message): unknown {
  if (message.error !== undefined) throw new MonitorCommandError(command, message.error.class, message.error.desc);
  return message.return;
}

/** QMP: greeting, qmp_capabilities, then commands with ids; events kept apart. */
export class QmpSession {
  private nextId = 1;
  private readonly lines: JsonLines;
  private constructor(lines: JsonLines) {
    this.lines = lines;
  }

  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpSession> {
    const lines = await JsonLines.open(socketPath, timeoutMs);
    try {
      await lines.next((m) => m.QMP !== undefined, timeoutMs, 'QMP greeting');
      const session = new QmpSession(lines);
      await session.execute('qmp_capabilities', undefined, timeoutMs);
      return session;
    } catch (err) {
      lines.close();
      throw err;
    }
  }

  get events(): readonly MonitorEvent[] {
    return this.lines.events;
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<unknown> {
    const id = `kv-${this.nextId++}`;
    const reply = this.lines.next((m) => m.id === id, timeoutMs, command);
    this.lines.send({ execute: command, ...(args === undefined ? {} : { arguments: args }), id });
    return unwrap(command, await reply);
  }

  /** Resolves with the first event of that name received so far or from now on. */
  async waitForEvent(name: string, timeoutMs: number): Promise<MonitorEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.events.find((e) => e.event === name);
      if (found !== undefined) return found;
      if (Date.now() >= deadline) throw new MonitorError(`no ${name} event within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    this.lines.close();
  }
}

/**
 * The guest agent: no greeting and no command ids, so every exchange starts with
 * guest-sync-delimited (retried until the agent in the guest answers with our
 * number) and commands go one at a time.
 */
export class AgentSession {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly lines: JsonLines;
  private constructor(lines: JsonLines) {
    this.lines = lines;
  }

  static async connect(socketPath: string, timeoutMs = 10_000): Promise<AgentSession> {
    return new AgentSession(await JsonLines.open(socketPath, timeoutMs));
  }

  /** Waits until the agent answers guest-sync-delimited; returns the time that took. */
  async sync(timeoutMs: number, retryMs = 1000): Promise<number> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    while (Date.now() < deadline) {
      const id = Math.floor(Math.random() * 2 ** 31);
      const reply = this.lines.next((m) => m.return === id, Math.min(retryMs, Math.max(1, deadline - Date.now())), 'guest-sync-delimited');
      this.lines.send({ execute: 'guest-sync-delimited', arguments: { id } });
      try {
        await reply;
        return Date.now() - started;
      } catch (err) {
        if (!(err instanceof MonitorError) || err.message.includes('socket')) throw err;
      }
    }
    throw new MonitorError(`guest agent did not answer guest-sync-delimited within ${timeoutMs} ms`);
  }

  execute(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      const reply = this.lines.next((m) => m.return !== undefined || m.error !== undefined, timeoutMs, command);
      this.lines.send({ execute: command, ...(args === undefined ? {} : { arguments: args }) });
      return unwrap(command, await reply);
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** For commands that answer nothing on success (guest-shutdown). */
  send(command: string, args?: Record<string, unknown>): void {
    this.lines.send({ execute: command, ...(args === undefined ? {} : { arguments: args }) });
  }

  close(): void {
    this.lines.close();
  }
}

const execStartSchema = z.object({ pid: z.number().int() });
const execStatusSchema = z.object({
  exited: z.boolean(),
  exitcode: z.number().int().optional(),
  signal: z.number().int().optional(),
  'out-data': z.string().optional(),
  'err-data': z.string().optional(),
});

export interface GuestCommandResult {
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
}

/** guest-exec without waiting: returns the guest pid. */
export async function startInGuest(agent: AgentSession, command: { path: string; arg: readonly string[] }): Promise<number> {
  const started = execStartSchema.parse(await agent.execute('guest-exec', { path: command.path, arg: [...command.arg] }));
  return started.pid;
}

/** guest-exec with captured output, polled with guest-exec-status until it exits. */
export async function runInGuest(
  agent: AgentSession,
  command: { path: string; arg: readonly string[] },
  timeoutMs = 30_000,
): Promise<GuestCommandResult> {
  const { pid } = execStartSchema.parse(
    await agent.execute('guest-exec', { path: command.path, arg: [...command.arg], 'capture-output': true }),
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = execStatusSchema.parse(await agent.execute('guest-exec-status', { pid }));
    if (status.exited) {
      const decode = (b64: string | undefined): string => Buffer.from(b64 ?? '', 'base64').toString('utf8');
      return { exitCode: status.exitcode, stdout: decode(status['out-data']), stderr: decode(status['err-data']) };
    }
    if (Date.now() >= deadline) throw new MonitorError(`${command.path} still running in the guest after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

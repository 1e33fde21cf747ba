// QEMU held by the launcher pod's PID 1 (launcher/pod/vm-pod.sh, ADR 0131) while the
// launcher runs outside the pod: the launcher writes QEMU's command line and commands
// into the pod's state directory and follows QEMU through the files the pod writes
// there. Those files come from the pod, whose QEMU may be a hostile guest's: each is
// opened without following links, must be a regular file, is read up to a bound and
// parsed strictly; anything else counts as absent.
import { constants, watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { QemuStartError } from '../supervisor/qemu-process.ts';
import type { QemuExit, QemuProcess } from '../supervisor/qemu-process.ts';

export const POD_FILES = {
  control: 'pod.ctl',
  argv: 'qemu.argv',
  pid: 'qemu.pid',
  stderr: 'qemu.stderr',
  exit: 'qemu.exit',
  fenceDeadline: 'fence.deadline',
  stopRequested: 'stop.requested',
} as const;

/** What the launcher leaves before a start: files of an earlier QEMU in the same state directory. */
const STALE = [POD_FILES.argv, POD_FILES.pid, POD_FILES.stderr, POD_FILES.exit, POD_FILES.fenceDeadline, POD_FILES.stopRequested];
const MAX_POD_FILE_BYTES = 16 * 1024;
const STDERR_LINES = 20;

export class PodGoneError extends Error {
  override name = 'PodGoneError';
}

/** Reads a file the pod wrote: no links, regular files only, at most MAX_POD_FILE_BYTES; undefined when absent or unfit. */
export async function readPodFile(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return undefined;
    const buffer = Buffer.alloc(Math.min(MAX_POD_FILE_BYTES, Math.max(0, stat.size)));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, Math.max(0, stat.size - buffer.length));
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

/** `status N[\nfenced]` as the pod writes it: N is bash's wait status (128+S for signal S). */
export function parsePodExit(text: string): (QemuExit & { fenced: boolean }) | undefined {
  const m = /^status (\d{1,3})\n(fenced\n)?$/.exec(text);
  if (m === null) return undefined;
  const status = Number(m[1]);
  if (status > 255) return undefined;
  const fenced = m[2] !== undefined;
  if (status > 128) {
    const name = Object.entries(osConstants.signals).find(([, n]) => n === status - 128)?.[0];
    if (name !== undefined) return { code: null, signal: name as NodeJS.Signals, fenced };
  }
  return { code: status, signal: null, fenced };
}

/** The launcher's side of one pod: commands to its PID 1, QEMU's start and exit, the pod's stop request. */
export class PodHost {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #startTimeoutMs: number;
  #writes = 0;
  /** Fence deadlines are written in order: an older one never lands after a newer one. */
  #deadlineWrite: Promise<void> = Promise.resolve();

  constructor(options: { stateDir: string; logger: Logger; startTimeoutMs?: number }) {
    this.#dir = options.stateDir;
    this.#log = options.logger.child({ component: 'pod-host' });
    this.#startTimeoutMs = options.startTimeoutMs ?? 10_000;
  }

  #file(name: string): string {
    return path.join(this.#dir, name);
  }

  /** The FIFO opened for writing: fails (ENXIO) when no process reads it. */
  #openControl(): Promise<FileHandle> {
    return open(this.#file(POD_FILES.control), constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  }

  /** Writes one command line to the pod's FIFO; PodGoneError when no process reads it (the pod's PID 1 is gone). */
  async send(command: string): Promise<void> {
    let handle;
    try {
      handle = await this.#openControl();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENXIO' || code === 'ENOENT') throw new PodGoneError(`the pod's process does not read ${POD_FILES.control} (${code})`);
      throw err;
    }
    try {
      if (!(await handle.stat()).isFIFO()) throw new PodGoneError(`${POD_FILES.control} is not a FIFO`);
      await handle.write(`${command}\n`);
    } finally {
      await handle.close();
    }
  }

  /** Whether the pod's PID 1 still reads its FIFO. */
  async podAlive(): Promise<boolean> {
    try {
      await (await this.#openControl()).close();
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once the pod's PID 1 reads its FIFO (it makes it as it starts); PodGoneError after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await this.podAlive())) {
      if (performance.now() > deadline) throw new PodGoneError(`the pod's process did not open ${POD_FILES.control} within ${String(timeoutMs)} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Writes a file the pod reads: a new file renamed into place, so the pod never reads half of it. */
  async #write(name: string, content: string | Buffer): Promise<void> {
    const tmp = this.#file(`.${name}.${process.pid}.${String(++this.#writes)}.tmp`);
    await writeFile(tmp, content, { flag: 'wx', mode: 0o600 });
    await rename(tmp, this.#file(name));
  }

  /** The fence deadline (ADR 0063): the pod kills QEMU once /proc/uptime passes it, unless it is moved on. */
  setFenceDeadline(msFromNow: number): Promise<void> {
    const asked = performance.now();
    const write = this.#deadlineWrite.then(async () => {
      const [uptime] = (await readFile('/proc/uptime', 'utf8')).split(' ');
      const left = msFromNow - (performance.now() - asked);
      const deadlineCs = Math.floor(Number(uptime) * 100) + Math.max(0, Math.floor(left / 10));
      await this.#write(POD_FILES.fenceDeadline, `${String(deadlineCs)}\n`);
    });
    this.#deadlineWrite = write.catch(() => undefined);
    return write;
  }

  /**
   * Milliseconds from now to the fence deadline the pod holds (negative once past), as
   * an earlier launcher wrote it; undefined when there is none (ADR 0136).
   */
  async fenceDeadlineFromNowMs(): Promise<number | undefined> {
    const text = await readPodFile(this.#file(POD_FILES.fenceDeadline));
    if (text === undefined || !/^\d{1,15}\n$/.test(text)) return undefined;
    const [uptime] = (await readFile('/proc/uptime', 'utf8')).split(' ');
    return Number(text) * 10 - Math.ceil(Number(uptime) * 1000);
  }

  /** Resolves once the pod asks for the VM to stop (its SIGTERM). */
  async stopRequested(signal: AbortSignal): Promise<void> {
    await this.#until(async () => ((await readPodFile(this.#file(POD_FILES.stopRequested))) !== undefined ? true : undefined), signal);
  }

  /** The code the pod's PID 1 exits with once QEMU has ended. */
  async exitWith(code: number): Promise<void> {
    await this.send(`exit ${code}`);
  }

  /** Removes what an earlier QEMU left in the state directory; before the fence deadline is first written. */
  async clearStale(): Promise<void> {
    for (const name of STALE) await rm(this.#file(name), { force: true });
  }

  /** Starts QEMU in the pod; resolves once the pod reports its pid. */
  async spawn(binary: string, args: readonly string[], logger: Logger): Promise<QemuProcess> {
    const argv = [binary, ...args];
    if (argv.some((a) => a.includes('\0'))) throw new QemuStartError('a QEMU argument holds a NUL byte');
    await this.#write(POD_FILES.argv, argv.map((a) => `${a}\0`).join(''));
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      try {
        await this.send('start');
        break;
      } catch (err) {
        if (!(err instanceof PodGoneError) || Date.now() > deadline) throw new QemuStartError(`QEMU not started: ${(err as Error).message}`);
        await sleep(100);
      }
    }
    const started = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
    const pid = await this.#until(async () => {
      const written = await this.#writtenPid();
      if (written !== undefined) return written;
      if ((await readPodFile(this.#file(POD_FILES.exit))) !== undefined) return -1;
      return undefined;
    }, started).catch(() => undefined);
    if (pid === undefined) throw new QemuStartError(`the pod did not start QEMU within ${this.#startTimeoutMs} ms`);
    return this.#follow(pid, logger);
  }

  /**
   * Follows the QEMU this pod already runs, started by an earlier launcher (an agent that
   * restarted, ADR 0135): its pid as the pod wrote it, and no exit written yet.
   */
  async attach(logger: Logger): Promise<QemuProcess> {
    if ((await readPodFile(this.#file(POD_FILES.exit))) !== undefined) throw new QemuStartError("the pod's QEMU has already exited");
    const pid = await this.#writtenPid();
    if (pid === undefined) throw new QemuStartError('the pod runs no QEMU to adopt (no pid written)');
    if (!(await this.podAlive())) throw new QemuStartError("the pod's process does not read its FIFO");
    return this.#follow(pid, logger);
  }

  /** QEMU's pid as the pod wrote it, when it has. */
  async #writtenPid(): Promise<number | undefined> {
    const text = await readPodFile(this.#file(POD_FILES.pid));
    return text !== undefined && /^\d{1,10}\n$/.test(text) ? Number(text) : undefined;
  }

  #follow(pid: number, logger: Logger): QemuProcess {
    let tail = '';
    let ended: QemuExit | undefined;
    const exited = this.#until(async () => {
      const exit = parsePodExit((await readPodFile(this.#file(POD_FILES.exit))) ?? '');
      if (exit !== undefined) {
        tail = await this.#stderrTail();
        if (exit.fenced) tail = `${tail}\nkilled by the pod at its fence deadline`.trim();
        return { code: exit.code, signal: exit.signal };
      }
      if (!(await this.podAlive())) {
        tail = `${await this.#stderrTail()}\nthe pod's process ended`.trim();
        return { code: null, signal: 'SIGKILL' as NodeJS.Signals };
      }
      return undefined;
    }, new AbortController().signal).then((exit) => {
      ended = exit;
      for (const line of tail.split('\n').filter((l) => l !== '')) logger.warn({ stderr: line }, 'qemu stderr');
      return exit;
    });
    return {
      pid,
      exited,
      stderrTail: () => tail,
      alive: () => ended === undefined,
      kill: () => {
        if (ended === undefined) void this.send('kill').catch((err: unknown) => this.#log.warn({ err }, 'could not ask the pod to kill QEMU'));
      },
    };
  }

  async #stderrTail(): Promise<string> {
    const text = (await readPodFile(this.#file(POD_FILES.stderr))) ?? '';
    return text.split('\n').filter((l) => l !== '').slice(-STDERR_LINES).map((l) => l.slice(0, 500)).join('\n');
  }

  /**
   * Polls `check` on every change in the state directory and at least once a second,
   * until it returns a value; rejects when `signal` aborts.
   */
  async #until<T>(check: () => Promise<T | undefined>, signal: AbortSignal): Promise<T> {
    let changed = false;
    let wake = (): void => {
      changed = true;
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.#dir, { persistent: false }, () => wake());
      watcher.on('error', () => undefined);
    } catch (err) {
      this.#log.warn({ err }, 'cannot watch the state directory; polling it');
    }
    try {
      for (;;) {
        signal.throwIfAborted();
        changed = false;
        const value = await check();
        if (value !== undefined) return value;
        if (changed) continue;
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            wake = (): void => {
              changed = true;
            };
            resolve();
          };
          const timer = setTimeout(done, 1000);
          wake = done;
          signal.addEventListener('abort', done, { once: true });
        });
      }
    } finally {
      watcher?.close();
    }
  }
}

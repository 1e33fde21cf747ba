// Keeps the serial console log bounded. QEMU copies everything the guest writes to its
// serial port into `serial.log` (chardev `logfile=`, opened O_APPEND because of
// `logappend=on`), and a guest may write without end. Every check interval the file's
// size is looked at; past `maxBytes` its content is copied aside and renamed over
// `serial.log.1` (the previous generation is replaced at once, so a reader of
// `serial.log.1` never sees a partial copy) and the file is truncated in place: QEMU's next
// append lands at offset 0, so its descriptor never needs reopening ("copytruncate").
// Output written between the copy and the truncation is lost — a few milliseconds of
// console. On disk the log takes at most 2 × maxBytes plus one interval of output.
// The directory is QEMU's to write: the log is opened without following a link, and the
// copy is written into a new file, so a link planted as `serial.log` is neither read
// through nor truncated (ADR 0132).
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';

export interface SerialLogOptions {
  path: string;
  log: Logger;
  /** Size at which the log rotates. */
  maxBytes?: number;
  checkIntervalMs?: number;
}

export const DEFAULT_SERIAL_LOG_MAX_BYTES = 8 * 1024 * 1024;
const DEFAULT_CHECK_INTERVAL_MS = 1000;

/** Copies what `from` holds into a new file `to` (created here: a link there is never written through). */
async function copyInto(from: FileHandle, to: string): Promise<void> {
  const copy = await open(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const buffer = Buffer.alloc(1024 * 1024);
    for (let position = 0; ; ) {
      const { bytesRead } = await from.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      await copy.write(buffer, 0, bytesRead);
      position += bytesRead;
    }
  } finally {
    await copy.close();
  }
}

export class SerialLogRotator {
  readonly #o: SerialLogOptions;
  readonly #maxBytes: number;
  #timer: NodeJS.Timeout | undefined;
  #checking = false;
  #rotations = 0;

  constructor(options: SerialLogOptions) {
    this.#o = options;
    this.#maxBytes = options.maxBytes ?? DEFAULT_SERIAL_LOG_MAX_BYTES;
  }

  /** How often the log has been rotated. */
  get rotations(): number {
    return this.#rotations;
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.check(), this.#o.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Rotates the log if it has grown past the limit; never throws. */
  async check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const log = await open(this.#o.path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const stat = await log.stat();
        if (!stat.isFile() || stat.size <= this.#maxBytes) return;
        const tmp = `${this.#o.path}.1.tmp`;
        await rm(tmp, { force: true });
        await copyInto(log, tmp);
        await rename(tmp, `${this.#o.path}.1`);
        await log.truncate(0);
        this.#rotations++;
        this.#o.log.info({ size: stat.size, rotations: this.#rotations }, 'serial log rotated');
      } finally {
        await log.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#o.log.warn({ err }, 'serial log rotation failed');
    } finally {
      this.#checking = false;
    }
  }
}

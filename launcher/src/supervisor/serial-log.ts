// Keeps the serial console log bounded. QEMU copies everything the guest writes to its
// serial port into `serial.log` (chardev `logfile=`, opened O_APPEND because of
// `logappend=on`), and a guest may write without end. Every check interval the file's
// size is looked at; past `maxBytes` its content is copied aside and renamed over
// `serial.log.1` (the previous generation is replaced at once, so a reader of
// `serial.log.1` never sees a partial copy) and the file is truncated in place: QEMU's next
// append lands at offset 0, so its descriptor never needs reopening ("copytruncate").
// Output written between the copy and the truncation is lost — a few milliseconds of
// console. On disk the log takes at most 2 × maxBytes plus one interval of output.
import { copyFile, rename, stat, truncate } from 'node:fs/promises';
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
      const size = (await stat(this.#o.path)).size;
      if (size <= this.#maxBytes) return;
      await copyFile(this.#o.path, `${this.#o.path}.1.tmp`);
      await rename(`${this.#o.path}.1.tmp`, `${this.#o.path}.1`);
      await truncate(this.#o.path, 0);
      this.#rotations++;
      this.#o.log.info({ size, rotations: this.#rotations }, 'serial log rotated');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#o.log.warn({ err }, 'serial log rotation failed');
    } finally {
      this.#checking = false;
    }
  }
}

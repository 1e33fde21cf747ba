// GET /v1/events: newline-delimited JSON. The current status comes first, then every
// status change and QEMU event as it happens; an empty line every 500 ms keeps idle
// connections (and proxies) honest and lets the operator tell a silent launcher within
// seconds (ADR 0063). A client that stops reading is dropped once 1 MiB
// waits for it, so a stalled reader cannot make the launcher buffer without end.
import type { ServerResponse } from 'node:http';
import type { LauncherEvent, Status } from '../api/status.ts';
import type { QmpEvent } from '../qmp/messages.ts';

export interface EventSource {
  readonly status: Status;
  on(event: 'status', listener: (status: Status) => void): unknown;
  on(event: 'qemu', listener: (event: QmpEvent) => void): unknown;
  off(event: 'status', listener: (status: Status) => void): unknown;
  off(event: 'qemu', listener: (event: QmpEvent) => void): unknown;
}

const HEARTBEAT_MS = 500;
const MAX_UNREAD_BYTES = 1024 * 1024;

export class EventStreams {
  #seq = 0;
  #source: EventSource;
  #now: () => Date;

  constructor(source: EventSource, now: () => Date = () => new Date()) {
    this.#source = source;
    this.#now = now;
  }

  /** Streams events into `res` until the client goes away. */
  serve(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    const write = (event: LauncherEvent): void => {
      if (res.writableLength > MAX_UNREAD_BYTES) {
        res.destroy();
        return;
      }
      res.write(`${JSON.stringify(event)}\n`);
    };
    const onStatus = (status: Status): void => write({ type: 'status', seq: this.#seq++, time: this.#now().toISOString(), status });
    const onQemu = (event: QmpEvent): void =>
      write({ type: 'qemu', seq: this.#seq++, time: this.#now().toISOString(), event: event.event, data: event.data });
    const heartbeat = setInterval(() => {
      if (res.writableLength > MAX_UNREAD_BYTES) res.destroy();
      else res.write('\n');
    }, HEARTBEAT_MS);
    onStatus(this.#source.status);
    this.#source.on('status', onStatus);
    this.#source.on('qemu', onQemu);
    res.once('close', () => {
      clearInterval(heartbeat);
      this.#source.off('status', onStatus);
      this.#source.off('qemu', onQemu);
    });
  }
}

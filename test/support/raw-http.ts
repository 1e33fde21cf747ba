// Raw HTTP/1.1 over a TCP socket, for tests that send what no HTTP client would: broken
// request lines, bad encodings, slow or never-ending requests, floods of connections.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RawExchange {
  /** Everything the server sent, as latin1. */
  readonly text: string;
  /** Whether the server closed the connection within the wait. */
  readonly closed: boolean;
  /** The status code of the first response, if one came. */
  readonly status: number | undefined;
}

/** Whether `text` holds a whole response with a content-length body. */
function responseComplete(text: string): boolean {
  const final = text.replace(/^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n(?:[^\r]+\r\n)*\r\n)+/, '');
  const end = final.indexOf('\r\n\r\n');
  const length = /\r\ncontent-length: (\d+)/i.exec(final);
  return end >= 0 && length !== null && final.length - end - 4 >= Number(length[1]);
}

export interface ExchangeOptions {
  /** Longest wait for an answer or the close. */
  readonly waitMs: number;
  /** Local address to connect from (any 127.0.0.0/8 address on loopback), to act as another peer. */
  readonly localAddress?: string;
}

/** Sends `bytes` on a fresh connection; resolves with the answer once complete, closed, or after `waitMs`. */
export async function rawExchange(host: string, port: number, bytes: Buffer, options: ExchangeOptions): Promise<RawExchange> {
  const socket = net.connect({ host, port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
  let text = '';
  let closed = false;
  socket.on('error', () => undefined);
  const done = new Promise<void>((resolve) => {
    socket.once('close', () => {
      closed = true;
      resolve();
    });
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (responseComplete(text)) resolve();
    });
  });
  socket.write(bytes);
  const timer = new AbortController();
  await Promise.race([done, sleep(options.waitMs, undefined, { signal: timer.signal }).catch(() => undefined)]);
  timer.abort();
  socket.destroy();
  // Interim 1xx answers (100 Continue) come before the final one.
  const m = /^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n(?:[^\r]+\r\n)*\r\n)*HTTP\/1\.[01] (\d{3})/.exec(text);
  return { text, closed, status: m === null ? undefined : Number(m[1]) };
}

/** Opens a connection and resolves with it once connected (or closed by the server). */
export function openSocket(host: string, port: number, localAddress?: string): Promise<net.Socket> {
  const socket = net.connect({ host, port, ...(localAddress === undefined ? {} : { localAddress }) });
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    socket.once('connect', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

// Runs the generated malformed requests of http-fuzz.ts against a launcher API port, and
// keeps slow clients open beside them: what the in-pod launcher's fuzz suite and the held
// launchers' suite both send.
import type { Socket } from 'node:net';
import { openSocket, rawExchange } from '../support/raw-http.ts';
import { fuzzRequest, type Random } from './http-fuzz.ts';

/** Statuses a request without the token may get (a health check aside). */
const UNAUTHENTICATED = [400, 401, 408, 413, 414, 417, 431, 501, 505];

export interface FuzzRun {
  /** How many answers of each status (`closed`, `no answer` when there was none). */
  readonly statuses: ReadonlyMap<string, number>;
  /** Answers the launcher must never give: a 5xx (bar 501, 505), or anything but a refusal without the token. */
  readonly unexpected: readonly string[];
}

export interface FuzzTarget {
  readonly host: string;
  readonly port: number;
  /** The API's valid token, carried by about one request in five. */
  readonly token: string;
  readonly random: Random;
  readonly requests: number;
  readonly concurrency: number;
  /** The attacker's own address, where the test's other clients use another. */
  readonly localAddress?: string;
}

export async function fuzzApi(o: FuzzTarget): Promise<FuzzRun> {
  const statuses = new Map<string, number>();
  const unexpected: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.requests) {
      next++;
      const request = fuzzRequest(o.random, o.token);
      const answer = await rawExchange(o.host, o.port, request.bytes, { waitMs: 400, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) });
      const key = answer.status === undefined ? (answer.closed ? 'closed' : 'no answer') : String(answer.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      const shown = JSON.stringify(request.bytes.toString('latin1').slice(0, 160));
      if (answer.status !== undefined && answer.status >= 500 && answer.status !== 501 && answer.status !== 505) unexpected.push(`${answer.status} for ${shown}`);
      const healthCheck = answer.text.includes('"ok":true');
      if (!request.authenticated && answer.status !== undefined && !healthCheck && !UNAUTHENTICATED.includes(answer.status)) {
        unexpected.push(`${answer.status} without the token for ${shown}`);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, () => worker()));
  return { statuses, unexpected };
}

export interface SlowClients {
  /** Per client, the ms from its start until the server closed it. */
  readonly closed: readonly Promise<number>[];
  /** Stops the drip and closes every client. */
  stop(): void;
}

/** `count` clients that each send one header line a second and never finish their request. */
export async function slowClients(host: string, port: number, count: number, localAddress?: string): Promise<SlowClients> {
  const sockets: Socket[] = await Promise.all(Array.from({ length: count }, () => openSocket(host, port, localAddress)));
  const started = Date.now();
  const closed = sockets.map((sock) => new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - started))));
  for (const sock of sockets) sock.write('GET /healthz HTTP/1.1\r\n');
  const drip = setInterval(() => {
    for (const sock of sockets) if (!sock.destroyed) sock.write(`X-Slow: ${Date.now()}\r\n`);
  }, 1000);
  return {
    closed,
    stop: () => {
      clearInterval(drip);
      for (const sock of sockets) sock.destroy();
    },
  };
}

// The operator's side of the launcher's console/VNC upgrade routes and of its guest
// info route (ADR 0067): `openLauncherStream` resolves with the raw socket once the
// launcher has answered 101, or rejects with the typed errors of the other calls
// (LauncherHttpError carries the launcher's 404/409/503 and its message).
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { GuestInfoReportSchema, type GuestInfoReport } from './guest-info.ts';
import { ErrorBodySchema } from './status.ts';
import { LauncherHttpError, LauncherProtocolError, LauncherTransport, LauncherUnreachableError, type LauncherClientOptions } from './transport.ts';

export type LauncherStreamKind = 'console' | 'vnc';

/** The protocol name in the launcher's `Upgrade` header. */
export const LAUNCHER_STREAM_PROTOCOL = 'keyvirt-stream';

/** The longest error body read from a refused upgrade. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export interface LauncherStreamOptions {
  baseUrl: string;
  token: string;
  kind: LauncherStreamKind;
  /** Until the launcher must have answered. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

function readError(res: http.IncomingMessage, path: string): Promise<never> {
  return new Promise((_resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (): void => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const parsed = ErrorBodySchema.safeParse(json);
      reject(new LauncherHttpError('GET', path, res.statusCode ?? 0, parsed.success ? parsed.data : undefined));
    };
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ERROR_BODY_BYTES) {
        res.destroy();
        return;
      }
      chunks.push(chunk);
    });
    res.once('end', fail);
    res.once('close', fail);
  });
}

/** `GET /v1/{console,vnc}` with `Upgrade: keyvirt-stream`: the socket to the guest's console or display. */
export function openLauncherStream(options: LauncherStreamOptions): Promise<Duplex> {
  const path = `/v1/${options.kind}`;
  const url = new URL(path, options.baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'GET',
      headers: { authorization: `Bearer ${options.token}`, connection: 'Upgrade', upgrade: LAUNCHER_STREAM_PROTOCOL },
      timeout: options.timeoutMs ?? 10_000,
      signal: options.signal,
    });
    req.once('timeout', () => req.destroy(new LauncherUnreachableError(`GET ${path}: no answer in time`)));
    req.once('error', (err) => reject(err instanceof LauncherUnreachableError ? err : new LauncherUnreachableError(`GET ${path}: ${err.message}`, { cause: err })));
    req.once('response', (res) => {
      readError(res, path).catch(reject);
    });
    req.once('upgrade', (res, socket, head) => {
      if ((res.headers.upgrade ?? '').toLowerCase() !== LAUNCHER_STREAM_PROTOCOL) {
        socket.destroy();
        reject(new LauncherProtocolError(`GET ${path}: upgraded to ${res.headers.upgrade ?? 'nothing'}`));
        return;
      }
      socket.setTimeout(0);
      // A launcher pod gone without a FIN (its node died) is noticed by the kernel's probes.
      socket.setKeepAlive(true, 30_000);
      socket.setNoDelay(true);
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.end();
  });
}

/** `GET /v1/guest`: the guest's OS, users and file systems from its agent. */
export function fetchGuestInfo(options: LauncherClientOptions): Promise<GuestInfoReport> {
  return new LauncherTransport(options).call('GET', '/v1/guest', undefined, GuestInfoReportSchema);
}

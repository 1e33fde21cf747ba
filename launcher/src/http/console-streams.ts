// The guest's serial console and VNC display as upgrade routes of the launcher API
// (ADR 0067): `GET /v1/console` and `GET /v1/vnc` with `Upgrade: keyvirt-stream`
// answer 101 and then carry raw bytes both ways between the client and QEMU's unix
// socket. One session per stream at a time (a second is 409 until the first ends);
// both directions are piped with backpressure, so a client that stops reading holds
// at most a socket buffer, never a growing queue. Nothing here times out an idle
// session: the operator's websocket pings decide when a peer is gone.
import net from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HttpError } from './errors.ts';
import { UPGRADE_PROTOCOL, type ApiServer, type UpgradeContext } from './server.ts';

export const STREAM_KINDS = ['console', 'vnc'] as const;
export type StreamKind = (typeof STREAM_KINDS)[number];

export interface ConsoleStreamOptions {
  /** QEMU's serial console socket. */
  serialSocket: string;
  /** QEMU's VNC socket; undefined when the VM has no display. */
  vncSocket: string | undefined;
  /** Until QEMU must have accepted the connection. */
  connectTimeoutMs?: number;
  /** Opens a connection to QEMU's socket (a launcher outside the pod checks the path first: pod/outside-view.ts). */
  connect?: (path: string) => Socket;
  /** Keep-alive probes on the client's TCP connection (a peer that vanished without a FIN). */
  keepAliveMs?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_KEEPALIVE_MS = 30_000;

/** Connects to a unix socket; rejects with HttpError 409 when nothing listens there (QEMU not running). */
function connectUnix(path: string, timeoutMs: number, connect: (path: string) => Socket): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    try {
      socket = connect(path);
    } catch (err) {
      reject(new HttpError(409, 'Conflict', `QEMU's socket is unusable: ${(err as Error).message}`));
      return;
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HttpError(503, 'Unavailable', 'QEMU did not accept the connection in time'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const missing = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
      reject(missing ? new HttpError(409, 'Conflict', 'the VM is not running') : new HttpError(503, 'Unavailable', 'cannot reach QEMU'));
    });
  });
}

/** Joins `client` and `guest` both ways; resolves when either side has ended (both are then destroyed). */
export function bridge(client: Duplex, guest: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      client.unpipe(guest);
      guest.unpipe(client);
      client.destroy();
      guest.destroy();
      resolve();
    };
    for (const side of [client, guest]) {
      side.once('close', end);
      side.once('end', end);
      side.once('error', end);
    }
    client.pipe(guest);
    guest.pipe(client);
  });
}

/** Registers `GET /v1/console` and `GET /v1/vnc`; the returned set names the streams in use. */
export function registerConsoleStreams(server: ApiServer, options: ConsoleStreamOptions): ReadonlySet<StreamKind> {
  const active = new Set<StreamKind>();
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEPALIVE_MS;
  const open = async (kind: StreamKind, ctx: UpgradeContext): Promise<void> => {
    const path = kind === 'console' ? options.serialSocket : options.vncSocket;
    if (path === undefined) throw new HttpError(404, 'NotFound', 'this VM has no display');
    if (active.has(kind)) throw new HttpError(409, 'Conflict', `the ${kind} is in use by another session`);
    active.add(kind);
    try {
      const guest = await connectUnix(path, connectTimeoutMs, options.connect ?? ((p: string) => net.connect({ path: p })));
      const { socket, head } = ctx;
      if (socket.destroyed) {
        guest.destroy();
        return;
      }
      const tcp = socket as Partial<Socket>;
      tcp.setKeepAlive?.(true, keepAliveMs);
      tcp.setNoDelay?.(true);
      tcp.setTimeout?.(0);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${UPGRADE_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
      if (head.length > 0) guest.write(head);
      ctx.log.info({ stream: kind }, 'stream session opened');
      await bridge(socket, guest);
      ctx.log.info({ stream: kind }, 'stream session closed');
    } finally {
      active.delete(kind);
    }
  };
  for (const kind of STREAM_KINDS) server.upgradeRoute(`/v1/${kind}`, (ctx) => open(kind, ctx));
  return active;
}

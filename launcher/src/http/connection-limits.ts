// Connection limits of the launcher API: a cap on open connections in total and per
// peer address, so that one pod opening sockets in a loop cannot exhaust the launcher's
// file descriptors or memory, nor crowd out the operator (which connects from its own
// address). Sockets over a cap are destroyed before any byte is read.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionLimits {
  /** Open connections in total. */
  readonly total: number;
  /** Open connections from one remote address. */
  readonly perPeer: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { total: 256, perPeer: 32 };

export interface ConnectionCounter {
  /** Connections refused so far because a cap was reached. */
  readonly refused: number;
  /** Open connections per peer address. */
  open(): ReadonlyMap<string, number>;
}

/** Installs the caps on `server`; `onRefused` hears about each refused connection. */
export function limitConnections(server: Server, limits: ConnectionLimits, onRefused: (peer: string, why: 'total' | 'peer') => void): ConnectionCounter {
  const perPeer = new Map<string, number>();
  let total = 0;
  let refused = 0;
  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? 'unknown';
    const fromPeer = perPeer.get(peer) ?? 0;
    const why = total >= limits.total ? 'total' : fromPeer >= limits.perPeer ? 'peer' : undefined;
    if (why !== undefined) {
      refused++;
      onRefused(peer, why);
      socket.destroy();
      return;
    }
    total++;
    perPeer.set(peer, fromPeer + 1);
    socket.once('close', () => {
      total--;
      const left = (perPeer.get(peer) ?? 1) - 1;
      if (left <= 0) perPeer.delete(peer);
      else perPeer.set(peer, left);
    });
  });
  return {
    get refused(): number {
      return refused;
    },
    open: () => new Map(perPeer),
  };
}

// A local TCP listener whose every connection is carried over a stream the caller opens
// (a websocket through the API server): bytes both ways with backpressure, each side's
// end closes the other. Used by vnc, port-forward, ssh and scp.
import net from 'node:net';
import type { Duplex } from 'node:stream';

export interface ProxyOptions {
  readonly address: string;
  /** 0: any free port. */
  readonly port: number;
  readonly dial: () => Promise<Duplex>;
  /** A connection could not be carried (dial failed or the stream broke). */
  readonly onError: (err: unknown) => void;
}

export interface LocalProxy {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function serveProxy(options: ProxyOptions): Promise<LocalProxy> {
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    socket.pause();
    options.dial().then(
      (remote) => {
        if (socket.destroyed) {
          remote.destroy();
          return;
        }
        socket.pipe(remote);
        remote.pipe(socket);
        remote.once('error', (err) => {
          options.onError(err);
          socket.destroy();
        });
        socket.once('error', () => remote.destroy());
        socket.once('close', () => remote.end());
        socket.resume();
      },
      (err: unknown) => {
        options.onError(err);
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : options.port;
  return {
    address: options.address,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

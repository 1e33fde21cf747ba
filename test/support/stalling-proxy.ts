// A TCP proxy on loopback in front of a server that can be made to stall: after
// `stall()` no byte moves in either direction on any connection, old or new, and no
// connection is closed — what a client sees when a network path or a server hangs.
import net from 'node:net';

export class StallingProxy {
  readonly #target: { host: string; port: number };
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #stalled = false;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  get stalled(): boolean {
    return this.#stalled;
  }

  /** Listens on 127.0.0.1; resolves with the port. */
  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** From now on nothing is forwarded. */
  stall(): void {
    this.#stalled = true;
    for (const s of this.#sockets) s.pause();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.#sockets.delete(socket));
  }

  #accept(client: net.Socket): void {
    this.#track(client);
    if (this.#stalled) {
      client.pause();
      return;
    }
    const upstream = net.connect(this.#target);
    this.#track(upstream);
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (!this.#stalled) to.write(chunk);
      });
      from.once('close', () => to.destroy());
    };
    forward(client, upstream);
    forward(upstream, client);
  }
}

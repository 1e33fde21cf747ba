// A loopback TCP proxy in front of the shared kube-apiserver for one client (a
// benchmark's operator): TLS passes through untouched (the server certificate names
// 127.0.0.1). `outage(ms)` is an API server restart as that client sees it: every open
// connection (watches included) is cut, new ones are refused for `ms`, then accepted
// again — without restarting the API server everyone else's suites use.
import net from 'node:net';

export interface ApiOutageProxy {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** Cuts every connection and refuses new ones for `ms`; resolves once it accepts again. */
  outage(ms: number): Promise<void>;
  close(): Promise<void>;
}

export async function startApiOutageProxy(target: { host: string; port: number }): Promise<ApiOutageProxy> {
  const open = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `https://127.0.0.1:${port}`,
    outage: async (ms) => {
      down = true;
      for (const s of open) s.destroy();
      open.clear();
      await new Promise((resolve) => setTimeout(resolve, ms));
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

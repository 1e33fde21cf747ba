// A loopback TCP proxy in front of the shared kube-apiserver for one client (a
// benchmark's operator): TLS passes through untouched (the server certificate names
// 127.0.0.1). `outage(ms)` is an API server restart as that client sees it: every open
// connection (watches included) is cut, new ones are refused for `ms`, then accepted
// again — without restarting the API server everyone else's suites use.
// `kubeconfigThrough` points a client's kubeconfig at the proxy.
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { z } from 'zod';

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

const kubeconfigClusters = z.looseObject({ clusters: z.array(z.looseObject({ cluster: z.looseObject({ server: z.string() }) })) });

/** Rewrites the kubeconfig `file` (JSON) so that every cluster's server is `url` (a proxy's); resolves with `file`. */
export async function kubeconfigThrough(file: string, url: string): Promise<string> {
  const config = kubeconfigClusters.parse(JSON.parse(await readFile(file, 'utf8')));
  for (const c of config.clusters) c.cluster.server = url;
  await writeFile(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

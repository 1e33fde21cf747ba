// /healthz (the process is alive and its loops run), /readyz (caches synced; a standby
// that is not leading is still ready — it can take over), /metrics (Prometheus text).
// The probes answer on the health address, which the kubelet must reach. /metrics names
// every tenant's VMs, so it is served on a metrics address of its own, loopback by
// default (ADR 0100): scraped by a sidecar or through a port-forward, or exposed on
// purpose. Only when both addresses are the same does one listener serve all three.
// Neither listener lets a client hold it: header and request timeouts, small headers.
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export interface HealthCheck {
  readonly name: string;
  /** Undefined when healthy, otherwise why not. */
  check(): string | undefined;
}

export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface HealthServerOptions {
  host: string;
  port: number;
  /** Where /metrics is served; absent: on the health listener. */
  metricsListen?: ListenAddress | undefined;
  log: Logger;
  liveness: readonly HealthCheck[];
  readiness: readonly HealthCheck[];
  metrics: MetricsSource;
}

function runChecks(checks: readonly HealthCheck[]): { ok: boolean; body: string } {
  const lines: string[] = [];
  let ok = true;
  for (const c of checks) {
    const failure = c.check();
    if (failure === undefined) lines.push(`[+]${c.name} ok`);
    else {
      ok = false;
      lines.push(`[-]${c.name} failed: ${failure}`);
    }
  }
  lines.push(ok ? 'ok' : 'not ok');
  return { ok, body: `${lines.join('\n')}\n` };
}

type Endpoint = 'probes' | 'metrics';

async function listenOn(server: Server, at: ListenAddress): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export class HealthServer {
  readonly #o: HealthServerOptions;
  readonly #servers: Server[] = [];
  #metricsPort: number | undefined;

  constructor(opts: HealthServerOptions) {
    this.#o = opts;
  }

  /** The port /metrics answers on, once listening. */
  get metricsPort(): number | undefined {
    return this.#metricsPort;
  }

  /** Listens; resolves with the bound health port. */
  async listen(): Promise<number> {
    const separate = this.#o.metricsListen !== undefined && (this.#o.metricsListen.host !== this.#o.host || this.#o.metricsListen.port !== this.#o.port);
    const health = this.#server(separate ? ['probes'] : ['probes', 'metrics']);
    const port = await listenOn(health, { host: this.#o.host, port: this.#o.port });
    if (!separate) {
      this.#metricsPort = port;
      this.#o.log.info({ host: this.#o.host, port }, 'health and metrics server listening');
      return port;
    }
    this.#o.log.info({ host: this.#o.host, port }, 'health server listening');
    const at = this.#o.metricsListen ?? { host: '127.0.0.1', port: 0 };
    this.#metricsPort = await listenOn(this.#server(['metrics']), at);
    this.#o.log.info({ host: at.host, port: this.#metricsPort }, 'metrics server listening');
    return port;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.#servers.map(async (server) => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }),
    );
  }

  #server(serves: readonly Endpoint[]): Server {
    const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000, maxHeaderSize: 8 * 1024 }, (req, res) => this.#answer(serves, req, res));
    this.#servers.push(server);
    return server;
  }

  #answer(serves: readonly Endpoint[], req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (serves.includes('probes') && (path === '/healthz' || path === '/readyz')) {
      const { ok, body } = runChecks(path === '/healthz' ? this.#o.liveness : this.#o.readiness);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(body);
      return;
    }
    if (serves.includes('metrics') && path === '/metrics') {
      this.#o.metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.#o.metrics.contentType }).end(text),
        (err: unknown) => {
          this.#o.log.error({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
}

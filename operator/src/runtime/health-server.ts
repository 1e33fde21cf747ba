// /healthz (the process is alive and its loops run), /readyz (caches synced; a standby
// that is not leading is still ready — it can take over), /metrics (Prometheus text).
import { type Server, createServer } from 'node:http';
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

export interface HealthServerOptions {
  host: string;
  port: number;
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

export class HealthServer {
  readonly #o: HealthServerOptions;
  #server: Server | undefined;

  constructor(opts: HealthServerOptions) {
    this.#o = opts;
  }

  /** Listens; resolves with the bound port. */
  async listen(): Promise<number> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz' || path === '/readyz') {
        const { ok, body } = runChecks(path === '/healthz' ? this.#o.liveness : this.#o.readiness);
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(body);
        return;
      }
      if (path === '/metrics') {
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
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#o.port, this.#o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    this.#o.log.info({ host: this.#o.host, port }, 'health and metrics server listening');
    return port;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

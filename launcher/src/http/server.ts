// The launcher's HTTP server: node:http with a small route table (see ADR 0043). Routes
// register themselves with `route()`. Every request is authenticated before it is
// routed: without the bearer token only the public health check answers, anything else
// is 401 whatever the path, so the route table is not revealed (ADR 0100). Bodies are
// size-limited JSON parsed with the route's zod schema. No request, however malformed,
// slow or numerous, can end the process: the target is parsed without throwing, every
// failure inside a handler becomes an error answer, and header/request timeouts plus
// connection caps bound what a client may hold (ADR 0101).
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { TokenCheck } from './auth.ts';
import { DEFAULT_CONNECTION_LIMITS, limitConnections, type ConnectionCounter, type ConnectionLimits } from './connection-limits.ts';
import { HttpError } from './errors.ts';
import { parseRequestTarget, shownTarget } from './request-target.ts';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Readonly<Record<string, string>>;
  log: Logger;
  /** Reads and validates the JSON body; an empty body is `{}`. Throws HttpError 400/413. */
  body: <S extends z.ZodType>(schema: S) => Promise<z.output<S>>;
}

/** A JSON reply, or `undefined` when the handler wrote the response itself (streams). */
export type RouteResult = { status: number; body: unknown } | undefined;

export type RouteHandler = (ctx: RouteContext) => Promise<RouteResult>;

/** An authenticated `GET` asking to upgrade to UPGRADE_PROTOCOL; the handler owns `socket` from then on. */
export interface UpgradeContext {
  req: IncomingMessage;
  socket: Duplex;
  /** Bytes the client sent after the request head. */
  head: Buffer;
  params: Readonly<Record<string, string>>;
  log: Logger;
}

export type UpgradeHandler = (ctx: UpgradeContext) => Promise<void>;

/** The only protocol the launcher upgrades to: a raw byte stream (ADR 0067). */
export const UPGRADE_PROTOCOL = 'keyvirt-stream';

interface Route {
  method: string;
  segments: string[];
  handler: RouteHandler;
  public: boolean;
}

/** Limits of what one client may send or hold; see ADR 0101 for the figures. */
export interface ServerLimits {
  readonly maxBodyBytes: number;
  readonly maxHeaderBytes: number;
  /** The whole header block must arrive within this (slowloris). */
  readonly headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this. */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  readonly connections: ConnectionLimits;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxBodyBytes: 64 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 15_000,
  connections: DEFAULT_CONNECTION_LIMITS,
};

export class ApiServer {
  #routes: Route[] = [];
  #upgrades: { segments: string[]; handler: UpgradeHandler }[] = [];
  #server: http.Server;
  #log: Logger;
  #checkToken: TokenCheck;
  #limits: ServerLimits;
  #connections: ConnectionCounter;

  constructor(logger: Logger, checkToken: TokenCheck, limits: Partial<ServerLimits> = {}) {
    this.#log = logger.child({ component: 'http' });
    this.#checkToken = checkToken;
    this.#limits = { ...DEFAULT_SERVER_LIMITS, ...limits };
    this.#server = http.createServer(
      {
        maxHeaderSize: this.#limits.maxHeaderBytes,
        headersTimeout: this.#limits.headersTimeoutMs,
        requestTimeout: this.#limits.requestTimeoutMs,
        keepAliveTimeout: this.#limits.keepAliveTimeoutMs,
        connectionsCheckingInterval: Math.min(1000, this.#limits.headersTimeoutMs),
        requireHostHeader: true,
        insecureHTTPParser: false,
      },
      (req, res) => this.#dispatch(req, res),
    );
    // `Expect: 100-continue` invites the body only from a client with the token; any
    // other gets its 401 without having been asked to send the body.
    this.#server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (this.#checkToken(req)) res.writeContinue();
      this.#dispatch(req, res);
    });
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      handleUpgrade(req, socket, head, { log: this.#log, checkToken: this.#checkToken, routes: this.#upgrades }).catch((err: unknown) => {
        this.#log.error({ err }, 'upgrade handling failed');
        socket.destroy();
      });
    });
    this.#connections = limitConnections(this.#server, this.#limits.connections, (peer, why) =>
      this.#log.warn({ peer, cap: why }, 'connection refused: too many open connections'),
    );
  }

  #dispatch(req: IncomingMessage, res: ServerResponse): void {
    this.#handle(req, res).catch((err: unknown) => {
      this.#log.error({ err }, 'request handling failed');
      res.destroy();
    });
  }

  /** Connections refused by the caps so far. */
  get refusedConnections(): number {
    return this.#connections.refused;
  }

  /** Registers a route; `pattern` segments starting with `:` capture parameters (`/v1/actions/:action`). */
  route(method: string, pattern: string, handler: RouteHandler, options: { public?: boolean } = {}): void {
    this.#routes.push({ method, segments: pattern.split('/').filter(Boolean), handler, public: options.public ?? false });
  }

  /** Registers an upgrade route (`GET` + `Upgrade: keyvirt-stream`), authenticated like every private route. */
  upgradeRoute(pattern: string, handler: UpgradeHandler): void {
    this.#upgrades.push({ segments: pattern.split('/').filter(Boolean), handler });
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    return this.#server.address() as AddressInfo;
  }

  /** Serves on a socket that is already listening (made in a pod's network namespace: pod/netns-listen.ts). */
  async listenOn(listening: NetServer): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(listening, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    return this.#server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** The route for `method` and `segments` among `routes`; 'method' when only the method differs. */
  #match(routes: readonly Route[], method: string, segments: readonly string[]): { route: Route; params: Record<string, string> } | 'method' | undefined {
    let methodMismatch = false;
    for (const route of routes) {
      if (route.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const ok = route.segments.every((seg, i) => {
        const part = segments[i] ?? '';
        if (seg.startsWith(':')) {
          params[seg.slice(1)] = part;
          return true;
        }
        return seg === part;
      });
      if (!ok) continue;
      if (route.method !== method) {
        methodMismatch = true;
        continue;
      }
      return { route, params };
    }
    return methodMismatch ? 'method' : undefined;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let log = this.#log.child({ method, target: shownTarget(req.url) });
    try {
      const target = parseRequestTarget(req.url);
      log = this.#log.child({ method, path: shownTarget(target.path) });
      const authorised = this.#checkToken(req);
      const routes = authorised ? this.#routes : this.#routes.filter((r) => r.public);
      const match = this.#match(routes, method, target.segments);
      if (!authorised && (match === undefined || match === 'method')) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'Unauthorized', 'a valid bearer token is required');
      }
      if (match === undefined) throw new HttpError(404, 'NotFound', `no route for ${shownTarget(target.path)}`);
      if (match === 'method') throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed on ${shownTarget(target.path)}`);
      const result = await match.route.handler({ req, res, params: match.params, log, body: (schema) => readBody(req, schema, this.#limits.maxBodyBytes) });
      if (result !== undefined) send(res, result.status, result.body);
    } catch (err) {
      const httpErr = err instanceof HttpError ? err : new HttpError(500, 'Internal', 'internal error');
      if (httpErr.status >= 500) log.error({ err }, 'request failed');
      else log.debug({ status: httpErr.status, code: httpErr.code, message: httpErr.message }, 'request rejected');
      // An unread body is drained (and bounded by the request timeout) by node:http.
      if (!res.headersSent) send(res, httpErr.status, httpErr.toBody());
      else res.end();
    }
  }
}

/** Answers an upgrade request that is not taken with a plain HTTP error and closes the socket. */
export function refuseUpgrade(socket: Duplex, err: HttpError): void {
  if (socket.destroyed) return;
  const text = JSON.stringify(err.toBody());
  const reason = http.STATUS_CODES[err.status] ?? 'Error';
  const auth = err.status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${auth}Cache-Control: no-store\r\nConnection: close\r\n\r\n${text}`,
  );
}

interface UpgradeDeps {
  log: Logger;
  checkToken: TokenCheck;
  routes: readonly { segments: string[]; handler: UpgradeHandler }[];
}

/** Same order as requests: parse the target, authenticate, then route; every failure is an answer. */
async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, deps: UpgradeDeps): Promise<void> {
  socket.on('error', () => socket.destroy());
  let log = deps.log.child({ method: req.method ?? 'GET', target: shownTarget(req.url), upgrade: true });
  try {
    const target = parseRequestTarget(req.url);
    log = deps.log.child({ method: req.method ?? 'GET', path: shownTarget(target.path), upgrade: true });
    if (!deps.checkToken(req)) throw new HttpError(401, 'Unauthorized', 'a valid bearer token is required');
    let params: Record<string, string> | undefined;
    const route = deps.routes.find((r) => {
      if (r.segments.length !== target.segments.length) return false;
      const found: Record<string, string> = {};
      const ok = r.segments.every((seg, i) => {
        const part = target.segments[i] ?? '';
        if (seg.startsWith(':')) {
          found[seg.slice(1)] = part;
          return true;
        }
        return seg === part;
      });
      if (ok) params = found;
      return ok;
    });
    if (route === undefined || params === undefined) throw new HttpError(404, 'NotFound', `no upgrade route for ${shownTarget(target.path)}`);
    if (req.method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', `${req.method ?? ''} is not allowed on ${shownTarget(target.path)}`);
    if ((req.headers.upgrade ?? '').toLowerCase() !== UPGRADE_PROTOCOL) {
      throw new HttpError(400, 'BadRequest', `only the ${UPGRADE_PROTOCOL} upgrade is offered`);
    }
    await route.handler({ req, socket, head, params, log });
  } catch (err) {
    const httpErr = err instanceof HttpError ? err : new HttpError(500, 'Internal', 'internal error');
    if (httpErr.status >= 500) log.error({ err }, 'upgrade failed');
    else log.debug({ status: httpErr.status, code: httpErr.code, message: httpErr.message }, 'upgrade rejected');
    refuseUpgrade(socket, httpErr);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readBody<S extends z.ZodType>(req: IncomingMessage, schema: S, maxBytes: number): Promise<z.output<S>> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) throw new HttpError(413, 'PayloadTooLarge', `request body exceeds ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, 'PayloadTooLarge', `request body exceeds ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  let json: unknown = {};
  if (text !== '') {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\b/i.test(type)) throw new HttpError(400, 'BadRequest', 'the request body must be application/json');
    try {
      json = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'BadRequest', 'the request body is not valid JSON');
    }
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({
      path: issue.path.length === 0 ? '(body)' : issue.path.map(String).join('.'),
      message: issue.message,
    }));
    throw new HttpError(400, 'BadRequest', `invalid request body: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, issues);
  }
  return parsed.data;
}

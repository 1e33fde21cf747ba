// The launcher's HTTP server: node:http with a small route table (see ADR 0043). Routes
// register themselves with `route()`; every route except the health check requires the
// bearer token; bodies are size-limited JSON parsed with the route's zod schema, and
// failures answer with the API's error body, never touching the VM.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { TokenCheck } from './auth.ts';
import { HttpError } from './errors.ts';

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

interface Route {
  method: string;
  segments: string[];
  handler: RouteHandler;
  public: boolean;
}

const MAX_BODY_BYTES = 64 * 1024;

export class ApiServer {
  #routes: Route[] = [];
  #server: http.Server;
  #log: Logger;
  #checkToken: TokenCheck;

  constructor(logger: Logger, checkToken: TokenCheck) {
    this.#log = logger.child({ component: 'http' });
    this.#checkToken = checkToken;
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.keepAliveTimeout = 65_000;
  }

  /** Registers a route; `pattern` segments starting with `:` capture parameters (`/v1/actions/:action`). */
  route(method: string, pattern: string, handler: RouteHandler, options: { public?: boolean } = {}): void {
    this.#routes.push({ method, segments: pattern.split('/').filter(Boolean), handler, public: options.public ?? false });
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

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #match(method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
    const parts = path.split('/').filter(Boolean);
    let methodMismatch = false;
    for (const route of this.#routes) {
      if (route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = route.segments.every((seg, i) => {
        const part = decodeURIComponent(parts[i] ?? '');
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
    const url = new URL(req.url ?? '/', 'http://launcher');
    const log = this.#log.child({ method: req.method, path: url.pathname });
    try {
      const match = this.#match(req.method ?? 'GET', url.pathname);
      if (match === undefined) throw new HttpError(404, 'NotFound', `no route for ${url.pathname}`);
      if (match === 'method') throw new HttpError(405, 'MethodNotAllowed', `${req.method ?? ''} is not allowed on ${url.pathname}`);
      if (!match.route.public && !this.#checkToken(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'Unauthorized', 'a valid bearer token is required');
      }
      const result = await match.route.handler({ req, res, params: match.params, log, body: (schema) => readBody(req, schema) });
      if (result !== undefined) send(res, result.status, result.body);
    } catch (err) {
      const httpErr = err instanceof HttpError ? err : new HttpError(500, 'Internal', 'internal error');
      if (httpErr.status >= 500) log.error({ err }, 'request failed');
      else log.info({ status: httpErr.status, code: httpErr.code, message: httpErr.message }, 'request rejected');
      if (!res.headersSent) send(res, httpErr.status, httpErr.toBody());
      else res.end();
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readBody<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<z.output<S>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'PayloadTooLarge', `request body exceeds ${MAX_BODY_BYTES} bytes`);
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

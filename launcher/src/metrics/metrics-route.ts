// GET /v1/metrics: the VM's metrics for the node agent (ADR 0069). Open to the VM's
// API token and to its read-only metrics token, a second file of the launcher's Secret
// that opens this route alone. The server's route table knows it as public so that the
// metrics token gets past the server's API-token check; this handler authenticates
// every request itself, and an unauthenticated one gets the same 401 as any unknown
// path (ADR 0100: the route table is not revealed).
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { bearerTokenCheck, tokenLengthProblem, type TokenCheck } from '../http/auth.ts';
import { HttpError } from '../http/errors.ts';
import type { ApiServer } from '../http/server.ts';
import type { VmMetrics } from '../api/vm-metrics.ts';

export interface MetricsRouteDeps {
  collect: () => Promise<VmMetrics>;
  /** The VM's API token check (full access includes this route). */
  apiToken: TokenCheck;
  /** The read-only metrics token check, when the launcher's Secret has one. */
  metricsToken: TokenCheck | undefined;
}

/** The metrics token check from `path`, or undefined when the file does not exist. A token shorter than 16 or longer than MAX_TOKEN_CHARS characters is refused. */
export async function readMetricsTokenCheck(path: string): Promise<TokenCheck | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const token = text.trim();
  if (tokenLengthProblem(token) !== undefined) return undefined;
  return bearerTokenCheck(token);
}

export function registerMetricsRoute(server: ApiServer, deps: MetricsRouteDeps): void {
  const authorised = (req: IncomingMessage): boolean => deps.apiToken(req) || deps.metricsToken?.(req) === true;
  server.route(
    'GET',
    '/v1/metrics',
    async ({ req, res }) => {
      if (!authorised(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'Unauthorized', 'a valid bearer token is required');
      }
      return { status: 200, body: await deps.collect() };
    },
    { public: true },
  );
}

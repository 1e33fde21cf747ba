// Where the operator's API server is and how its requests authenticate, without
// @kubernetes/client-node's KubeConfig: that module loads every generated API model and
// every auth plugin (Azure, GCP, OIDC, exec), ~50 MiB of resident memory the operator
// never uses. The two ways the operator is run are read here: in a pod (the service
// account's token, re-read as the kubelet rotates it, and the cluster CA) and a
// kubeconfig file in JSON (what the suites and benchmarks write) with a bearer token or
// a client certificate. Anything else — a YAML kubeconfig, exec or auth-provider
// plugins, proxies, basic auth, impersonation — is handed to client-node's KubeConfig,
// loaded only then.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isIPv6 } from 'node:net';
import path from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { Agent, type Dispatcher } from 'undici';
import { z } from 'zod';

/** The API server and the credentials of one request (see KubeClient). */
export interface ApiEndpoint {
  readonly server: string;
  /** The headers that authenticate one request. */
  headers(): Promise<Record<string, string>>;
  /** The connection pool (TLS material included) every request goes through. */
  readonly dispatcher: Dispatcher;
}

export class ApiAccessError extends Error {
  override readonly name = 'ApiAccessError';
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** How long a token read from a file is used before it is read again (client-go: 1 min). */
export const TOKEN_REREAD_MS = 60_000;

const clusterSchema = z.strictObject({
  server: z.string().min(1),
  'certificate-authority': z.string().optional(),
  'certificate-authority-data': z.string().optional(),
  'insecure-skip-tls-verify': z.boolean().optional(),
  'tls-server-name': z.string().optional(),
});

const userSchema = z.strictObject({
  token: z.string().optional(),
  tokenFile: z.string().optional(),
  'client-certificate': z.string().optional(),
  'client-certificate-data': z.string().optional(),
  'client-key': z.string().optional(),
  'client-key-data': z.string().optional(),
});

/** The kubeconfig this module reads; anything outside it goes to client-node. */
const leanKubeconfig = z.looseObject({
  'current-context': z.string().min(1),
  clusters: z.array(z.looseObject({ name: z.string(), cluster: clusterSchema })),
  users: z.array(z.looseObject({ name: z.string(), user: userSchema })),
  contexts: z.array(z.looseObject({ name: z.string(), context: z.looseObject({ cluster: z.string(), user: z.string() }) })),
});

/** A token from a file, read again once TOKEN_REREAD_MS have passed. */
class FileToken {
  readonly #file: string;
  readonly #now: () => number;
  #token = '';
  #readAt = -Infinity;

  constructor(file: string, now: () => number) {
    this.#file = file;
    this.#now = now;
  }

  async get(): Promise<string> {
    if (this.#now() - this.#readAt >= TOKEN_REREAD_MS) {
      this.#token = (await readFile(this.#file, 'utf8')).trim();
      this.#readAt = this.#now();
    }
    return this.#token;
  }
}

interface Tls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

function endpoint(server: string, tls: Tls, token: (() => Promise<string>) | undefined): ApiEndpoint {
  if (server.startsWith('http:') && tls.rejectUnauthorized !== false) {
    throw new ApiAccessError(`server ${server}: plain HTTP needs insecure-skip-tls-verify`);
  }
  const hasTls = Object.values(tls).some((v) => v !== undefined);
  const dispatcher = new Agent(hasTls ? { connect: { ...tls, keepAlive: true, keepAliveInitialDelay: 30_000 } } : {});
  return {
    server: server.replace(/\/$/, ''),
    dispatcher,
    headers: async (): Promise<Record<string, string>> => (token === undefined ? {} : { authorization: `Bearer ${await token()}` }),
  };
}

/** The service account's access from inside a pod (client-go's rest.InClusterConfig). */
export function inClusterEndpoint(env: NodeJS.ProcessEnv, now: () => number, dir = SERVICE_ACCOUNT_DIR): ApiEndpoint {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (host === undefined || host === '' || port === undefined || port === '') {
    throw new ApiAccessError('KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set to run in a cluster');
  }
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  const token = new FileToken(path.join(dir, 'token'), now);
  const tls: Tls = scheme === 'https' ? { ca: readFileSync(path.join(dir, 'ca.crt')) } : { rejectUnauthorized: false };
  return endpoint(`${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`, tls, () => token.get());
}

function fileOrData(dir: string, file: string | undefined, data: string | undefined): Buffer | undefined {
  if (data !== undefined) return Buffer.from(data, 'base64');
  return file === undefined ? undefined : readFileSync(path.resolve(dir, file));
}

/**
 * The access a JSON kubeconfig describes, or undefined when it holds anything this
 * module does not read (then client-node's KubeConfig must load it).
 */
export function kubeconfigEndpoint(text: string, file: string, now: () => number): ApiEndpoint | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = leanKubeconfig.safeParse(raw);
  if (!parsed.success) return undefined;
  const config = parsed.data;
  const context = config.contexts.find((c) => c.name === config['current-context'])?.context;
  const cluster = config.clusters.find((c) => c.name === context?.cluster)?.cluster;
  const user = config.users.find((u) => u.name === context?.user)?.user;
  if (cluster === undefined || user === undefined) return undefined;
  const dir = path.dirname(file);
  const tls: Tls = {};
  const ca = fileOrData(dir, cluster['certificate-authority'], cluster['certificate-authority-data']);
  const cert = fileOrData(dir, user['client-certificate'], user['client-certificate-data']);
  const key = fileOrData(dir, user['client-key'], user['client-key-data']);
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  if (cluster['insecure-skip-tls-verify'] === true) tls.rejectUnauthorized = false;
  if (cluster['tls-server-name'] !== undefined) tls.servername = cluster['tls-server-name'];
  const { token: literal, tokenFile } = user;
  let token: (() => Promise<string>) | undefined;
  if (literal !== undefined) token = () => Promise.resolve(literal);
  else if (tokenFile !== undefined) {
    const fromFile = new FileToken(path.resolve(dir, tokenFile), now);
    token = () => fromFile.get();
  }
  return endpoint(cluster.server, tls, token);
}

/**
 * The operator's API access: `kubeconfig` when given, else (client-go's order) the
 * KUBECONFIG file, ~/.kube/config, the pod's service account.
 */
export async function loadApiAccess(kubeconfig: string | undefined, env: NodeJS.ProcessEnv, now: () => number = Date.now): Promise<ApiEndpoint | KubeConfig> {
  const envFile = env.KUBECONFIG?.split(path.delimiter).filter((f) => f !== '');
  const home = path.join(env.HOME ?? homedir(), '.kube', 'config');
  let file = kubeconfig;
  if (file === undefined && envFile !== undefined && envFile.length === 1) file = envFile[0];
  const several = file === undefined && envFile !== undefined && envFile.length > 1;
  if (file === undefined && !several) {
    const homeText = await readFile(home, 'utf8').catch(() => undefined);
    if (homeText === undefined) return inClusterEndpoint(env, now);
    file = home;
  }
  if (file !== undefined) {
    const lean = kubeconfigEndpoint(await readFile(file, 'utf8'), file, now);
    if (lean !== undefined) return lean;
  }
  const { KubeConfig: FullKubeConfig } = await import('@kubernetes/client-node');
  const kc = new FullKubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

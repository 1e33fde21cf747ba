// Who may talk to the subresource server, decided the way Kubernetes extension servers
// decide it (ADR 0066): the TLS client certificate must chain to the requestheader CA
// of `kube-system/extension-apiserver-authentication` and, when that ConfigMap lists
// allowed names, carry one of them as its CN. Only then are the X-Remote-* headers
// believed. Parsing the ConfigMap and both decisions are pure.
import { z } from 'zod';

/** The front-proxy settings the kube-apiserver publishes. */
export interface FrontProxyConfig {
  /** PEM bundle of the CA that signs the front-proxy client certificate. */
  readonly caPem: string;
  /** CNs accepted; empty means any certificate of the CA. */
  readonly allowedNames: readonly string[];
  /** Header names, lowercase (Node lowercases request headers). */
  readonly usernameHeaders: readonly string[];
  readonly uidHeaders: readonly string[];
  readonly groupHeaders: readonly string[];
  readonly extraHeaderPrefixes: readonly string[];
}

export class FrontProxyConfigError extends Error {
  override readonly name = 'FrontProxyConfigError';
}

const jsonStringList = (field: string): z.ZodType<string[]> =>
  z.string().transform((text, ctx): string[] => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: `${field} is not JSON` });
      return z.NEVER;
    }
    const list = z.array(z.string()).safeParse(value);
    if (!list.success) {
      ctx.addIssue({ code: 'custom', message: `${field} is not a JSON list of strings` });
      return z.NEVER;
    }
    return list.data;
  });

const configMapSchema = z.object({
  data: z.object({
    'requestheader-client-ca-file': z.string().includes('BEGIN CERTIFICATE', { error: 'requestheader-client-ca-file holds no PEM certificate' }),
    'requestheader-allowed-names': jsonStringList('requestheader-allowed-names').optional(),
    'requestheader-username-headers': jsonStringList('requestheader-username-headers'),
    'requestheader-uid-headers': jsonStringList('requestheader-uid-headers').optional(),
    'requestheader-group-headers': jsonStringList('requestheader-group-headers').optional(),
    'requestheader-extra-headers-prefix': jsonStringList('requestheader-extra-headers-prefix').optional(),
  }),
});

/** The front-proxy settings from the ConfigMap's JSON; FrontProxyConfigError names what is missing. */
export function parseFrontProxyConfig(configMap: unknown): FrontProxyConfig {
  const parsed = configMapSchema.safeParse(configMap);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new FrontProxyConfigError(`kube-system/extension-apiserver-authentication has no usable front-proxy settings (is the kube-apiserver started with --requestheader-client-ca-file?): ${issues}`);
  }
  const d = parsed.data.data;
  const lower = (list: readonly string[] | undefined): string[] => (list ?? []).map((h) => h.toLowerCase());
  const usernameHeaders = lower(d['requestheader-username-headers']);
  if (usernameHeaders.length === 0) throw new FrontProxyConfigError('requestheader-username-headers is empty');
  return {
    caPem: d['requestheader-client-ca-file'],
    allowedNames: d['requestheader-allowed-names'] ?? [],
    usernameHeaders,
    uidHeaders: lower(d['requestheader-uid-headers']),
    groupHeaders: lower(d['requestheader-group-headers']),
    extraHeaderPrefixes: lower(d['requestheader-extra-headers-prefix']),
  };
}

/** What TLS established about the client. */
export interface PeerCertificate {
  /** The chain verified against the requestheader CA (Node's `socket.authorized`). */
  readonly authorized: boolean;
  /** The certificate's subject CN; undefined when the client sent none. */
  readonly commonName: string | undefined;
}

export type FrontProxyDecision = { ok: true } | { ok: false; why: string };

export function checkFrontProxy(peer: PeerCertificate, config: Pick<FrontProxyConfig, 'allowedNames'>): FrontProxyDecision {
  if (peer.commonName === undefined && !peer.authorized) return { ok: false, why: 'no client certificate' };
  if (!peer.authorized) return { ok: false, why: 'the client certificate is not signed by the requestheader CA' };
  if (config.allowedNames.length > 0 && (peer.commonName === undefined || !config.allowedNames.includes(peer.commonName))) {
    return { ok: false, why: `the client certificate's CN ${JSON.stringify(peer.commonName ?? '')} is not an allowed front-proxy name` };
  }
  return { ok: true };
}

export interface RemoteUser {
  readonly username: string;
  readonly uid: string | undefined;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

/** Headers as Node's `req.headersDistinct`: lowercase names, every value of repeated headers. */
export type DistinctHeaders = Readonly<Record<string, readonly string[] | undefined>>;

/** The user the kube-apiserver authenticated, from a request already known to come from it. */
export function remoteUser(headers: DistinctHeaders, config: FrontProxyConfig): RemoteUser | undefined {
  const first = (names: readonly string[]): string | undefined => {
    for (const name of names) {
      const value = headers[name]?.find((v) => v !== '');
      if (value !== undefined) return value;
    }
    return undefined;
  };
  const username = first(config.usernameHeaders);
  if (username === undefined) return undefined;
  const groups = config.groupHeaders.flatMap((name) => headers[name] ?? []).filter((g) => g !== '');
  const extra: Record<string, string[]> = {};
  for (const [header, values] of Object.entries(headers)) {
    const prefix = config.extraHeaderPrefixes.find((p) => header.startsWith(p));
    if (prefix === undefined || values === undefined) continue;
    let key: string;
    try {
      key = decodeURIComponent(header.slice(prefix.length)).toLowerCase();
    } catch {
      continue;
    }
    if (key === '') continue;
    (extra[key] ??= []).push(...values);
  }
  return { username, uid: first(config.uidHeaders), groups, extra };
}

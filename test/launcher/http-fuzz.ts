// Generates malformed HTTP/1.1 requests for the launcher's API, from a seed (the same
// seed gives the same requests). Requests carrying the valid token never use a method
// or path that could act on the VM, so any change in the guest is the launcher's fault.

/** A small deterministic PRNG (mulberry32). */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE', 'get', 'G ET', 'PRI', 'M-SEARCH', ''];
const SAFE_AUTH_METHODS = ['GET', 'HEAD', 'OPTIONS', 'get', 'PRI', 'FOO'];
const PATHS = ['/healthz', '/v1/info', '/v1/status', '/v1/events', '/v1/actions/pause', '/v1/actions/stop', '/v1/actions/reset', '/v1/migrations', '/v1/migrations/current', '/v1/migrations/incoming', '/', '/v2/info'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.1x', 'http/1.1', 'HTTP/1.', ''];
const TARGET_MUTATIONS: readonly ((r: Random, p: string) => string)[] = [
  (_r, p) => p,
  (_r, p) => `/${p}`,
  (r, p) => `//a:${r.pick(['99999', '0', '-1', '65536', 'x', ''])}${p}`,
  (r, p) => `${p}%${r.pick(['', 'E0%A4%A', 'C3%28', '00', 'zz', 'FF%FE', '2F..'])}`,
  (r, p) => `${p}?${r.bytes(r.int(40)).toString('latin1')}`,
  (r, p) => `${p}/${'a'.repeat(r.int(9000))}`,
  (_r, p) => `http://launcher${p}`,
  () => '*',
  (_r, p) => `${p}/../../etc/passwd`,
  (r, p) => p.replace(/\//g, () => r.pick(['/', '\\', '%2F', '//', '/./'])),
  (r) => r.bytes(1 + r.int(60)).toString('latin1'),
  (_r, p) => `${p}\u00e9\u{1F600}`,
];

function header(r: Random, token: string | undefined): string {
  const kinds: readonly (() => string)[] = [
    () => `Host: ${r.pick(['x', '', 'a:99999', '[::1', 'launcher'])}`,
    () => `Content-Length: ${r.pick(['0', '5', '-1', '99999999999', 'abc', '1, 2', ' 7', '18446744073709551616'])}`,
    () => `Transfer-Encoding: ${r.pick(['chunked', 'gzip', 'chunked, chunked', 'x', 'identity'])}`,
    () => `Content-Type: ${r.pick(['application/json', 'text/plain', 'application/json; charset=utf-16', '', '\x00'])}`,
    () => `Authorization: ${r.pick(['Bearer', 'Bearer ', 'Bearer nope', 'Basic Zm9vOmJhcg==', `Bearer ${'x'.repeat(5000)}`, 'Bearer \xff\xfe'])}`,
    () => `Connection: ${r.pick(['close', 'keep-alive', 'upgrade', 'x'])}`,
    () => `Upgrade: ${r.pick(['websocket', 'h2c', 'x'])}`,
    () => `Expect: ${r.pick(['100-continue', 'x'])}`,
    () => `${r.bytes(1 + r.int(20)).toString('latin1')}: ${r.bytes(r.int(40)).toString('latin1')}`,
    () => `X-Long: ${'b'.repeat(r.int(20_000))}`,
    () => ` folded continuation ${r.int(1000)}`,
    () => `X-Null: a\x00b`,
    () => 'NoColonHere',
  ];
  const line = r.pick(kinds)();
  if (token !== undefined && line.startsWith('Authorization')) return `Authorization: Bearer ${token}`;
  return line;
}

function body(r: Random): Buffer {
  switch (r.int(5)) {
    case 0:
      return Buffer.alloc(0);
    case 1:
      return r.bytes(r.int(400));
    case 2:
      return Buffer.from(`${r.pick(['zz', '-1', '0', 'fffffffffffffffff', '5;ext=1'])}\r\n${r.bytes(r.int(20)).toString('latin1')}\r\n${r.pick(['0\r\n\r\n', '', 'x'])}`, 'latin1');
    case 3:
      return Buffer.from(`\x01{"gracePeriodSeconds": ${r.pick(['1e400', '-1', '"x"', 'null', '{}'])}}`, 'latin1');
    default:
      return Buffer.from(`\x01${'['.repeat(r.int(5000))}`, 'latin1');
  }
}

export interface FuzzRequest {
  readonly bytes: Buffer;
  /** Whether the valid token was included (the request may reach a handler). */
  readonly authenticated: boolean;
}

const VALID_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];
/** Target mutations that keep to what the HTTP parser accepts, so the request reaches the launcher's own code. */
const PARSEABLE_TARGETS: readonly ((r: Random, p: string) => string)[] = [
  (_r, p) => p,
  (_r, p) => `/${p}`,
  (r, p) => `//a:${r.pick(['99999', '0', '-1', '65536', 'x', ''])}${p}`,
  (r, p) => `${p}%${r.pick(['', 'E0%A4%A', 'C3%28', '00', 'zz', 'FF%FE', '2F..', 'ED%A0%80'])}`,
  (r, p) => `${p}/${'a'.repeat(r.int(9000))}`,
  (_r, p) => `${p}/../../etc/passwd`,
  (r, p) => `${p}?${r.pick(['a=%', '%%%', 'x'.repeat(3000), '&&&=', '__proto__=1', 'constructor[prototype]=1'])}`,
  (r, p) => `${p}/${r.pick(['__proto__', 'constructor', 'hasOwnProperty', '%5F%5Fproto%5F%5F'])}`,
];
const PARSEABLE_HEADERS: readonly ((r: Random) => string)[] = [
  (r) => `Content-Type: ${r.pick(['application/json', 'text/plain', 'application/json; charset=utf-16', 'application/jsonx'])}`,
  (r) => `Authorization: ${r.pick(['Bearer', 'Bearer nope', 'Basic Zm9vOmJhcg==', `Bearer ${'x'.repeat(5000)}`, 'bearer  x  y'])}`,
  (r) => `Accept: ${r.pick(['*/*', 'application/json', 'x'.repeat(2000)])}`,
  (r) => `X-Forwarded-For: ${r.pick(['1.2.3.4', '::1', 'x'])}`,
  (r) => `Expect: ${r.pick(['100-continue', 'x'])}`,
];

/** One generated request; `token` is included in about one request in five. */
export function fuzzRequest(r: Random, token: string): FuzzRequest {
  const authenticated = r.chance(0.2);
  // Half the requests are well-formed HTTP with hostile content, so they reach the
  // launcher's routing and body handling; the other half attack the parser itself.
  if (r.chance(0.5)) {
    const method = authenticated ? 'GET' : r.pick(VALID_METHODS);
    const target = r.pick(PARSEABLE_TARGETS)(r, r.pick(PATHS));
    const lines = [`${method} ${target} HTTP/1.1`, 'Host: launcher'];
    for (let i = r.int(4); i > 0; i--) lines.push(r.pick(PARSEABLE_HEADERS)(r));
    if (authenticated) lines.push(`Authorization: Bearer ${token}`);
    const payload = method === 'GET' ? Buffer.alloc(0) : body(r);
    lines.push(`Content-Length: ${payload.length}`);
    return { bytes: Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]), authenticated };
  }
  const method = authenticated ? r.pick(SAFE_AUTH_METHODS) : r.pick(METHODS);
  const target = r.pick(TARGET_MUTATIONS)(r, r.pick(PATHS));
  const eol = r.chance(0.85) ? '\r\n' : r.pick(['\n', '\r', '\n\r']);
  const lines = [`${method} ${target} ${r.pick(VERSIONS)}`];
  if (r.chance(0.8)) lines.push('Host: launcher');
  for (let i = r.int(8); i > 0; i--) lines.push(header(r, authenticated ? token : undefined));
  if (authenticated) lines.push(`Authorization: Bearer ${token}`);
  let bytes: Buffer = Buffer.concat([Buffer.from(`${lines.join(eol)}${eol}${eol}`, 'latin1'), body(r)]);
  if (r.chance(0.15)) bytes = bytes.subarray(0, r.int(bytes.length));
  if (r.chance(0.05)) bytes = r.bytes(1 + r.int(200));
  return { bytes, authenticated };
}

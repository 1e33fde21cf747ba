// A user of the subresource API as a person would be: a ServiceAccount token, the
// kube-apiserver's URL and CA, and nothing else — every request goes through the
// kube-apiserver (which authenticates, authorises and proxies to the aggregated API).
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { WebSocket } from 'ws';
import type { TestCluster } from '../support/cluster.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');

/** The chart's aggregated user ClusterRoles (keyvirt.io:view, edit, admin), rendered by helm. */
export function chartUserRoles(): string {
  const helm = path.join(repo, 'hack/.cache/k8s/bin/helm');
  const r = spawnSync(helm, ['template', 'keyvirt', path.join(repo, 'charts/keyvirt'), '--kube-version', '1.34.0', '--show-only', 'templates/user-roles.yaml'], {
    encoding: 'utf8',
    env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm') },
  });
  if (r.status !== 0) throw new Error(`helm template: ${r.stderr}`);
  return r.stdout;
}

export interface ApiUser {
  readonly name: string;
  readonly token: string;
  readonly ca: Buffer;
  readonly server: string;
}

/** A ServiceAccount in `namespace`, and a token for it. */
export async function serviceAccountUser(cluster: TestCluster, namespace: string, name: string): Promise<ApiUser> {
  cluster.kubectl(['create', 'serviceaccount', name, '-n', namespace]);
  const token = cluster.kubectl(['create', 'token', name, '-n', namespace, '--duration=2h']).trim();
  return { name: `system:serviceaccount:${namespace}:${name}`, token, ca: await readFile(path.join(cluster.layout.pkiDir, 'ca.crt')), server: cluster.apiServer.url };
}

export function subresourcePath(namespace: string, vm: string, subresource: string): string {
  return `/apis/subresources.keyvirt.io/v1alpha1/namespaces/${namespace}/virtualmachines/${vm}/${subresource}`;
}

export interface ApiAnswer {
  status: number;
  body: string;
  json: () => unknown;
}

/** One request as `user`; resolves with any status. */
export function apiRequest(user: ApiUser, method: string, urlPath: string, body?: string): Promise<ApiAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(urlPath, user.server), {
      method,
      ca: user.ca,
      headers: { authorization: `Bearer ${user.token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) },
      timeout: 60_000,
    });
    req.once('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer in 60 s`)));
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown });
      });
    });
    req.end(body);
  });
}

export type WsOpen = { ok: true; ws: WebSocket; protocol: string } | { ok: false; status: number; body: string };

/** A websocket to `urlPath` through the kube-apiserver; an HTTP refusal is returned, not thrown. */
export function openWebSocket(user: ApiUser, urlPath: string, protocols: string[] = ['plain.keyvirt.io']): Promise<WsOpen> {
  return new Promise((resolve, reject) => {
    const url = new URL(urlPath, user.server);
    url.protocol = 'wss:';
    const ws = new WebSocket(url, protocols, { ca: user.ca, headers: { authorization: `Bearer ${user.token}` }, handshakeTimeout: 60_000 });
    ws.once('open', () => resolve({ ok: true, ws, protocol: ws.protocol }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => resolve({ ok: false, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    ws.once('error', (err) => reject(err));
  });
}

/** Collects what the server sends; `until` resolves when the text so far matches. */
export function collect(ws: WebSocket): { text: () => string; until: (pattern: RegExp, timeoutMs: number) => Promise<string> } {
  let text = '';
  const waiters: { pattern: RegExp; resolve: (t: string) => void }[] = [];
  ws.on('message', (data: Buffer) => {
    text += data.toString('latin1');
    for (const w of [...waiters]) {
      if (w.pattern.test(text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(text);
      }
    }
  });
  return {
    text: () => text,
    until: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        if (pattern.test(text)) {
          resolve(text);
          return;
        }
        const timer = setTimeout(() => reject(new Error(`no ${String(pattern)} within ${timeoutMs} ms; got ${JSON.stringify(text.slice(-400))}`)), timeoutMs);
        waiters.push({ pattern, resolve: (t) => { clearTimeout(timer); resolve(t); } });
      }),
  };
}

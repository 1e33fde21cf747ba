// The subresource server over real TLS, with certificates made by openssl: who gets
// past the front-proxy check, discovery, the SubjectAccessReview decision, errors as
// Status objects, an action and a websocket session against a stand-in launcher.
// The API server is a fake (a table of answers); the kube-apiserver end to end is
// test/subresources/subresources.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { KubeApiError } from '../runtime/kube-client.ts';
import type { FrontProxyConfig } from './front-proxy.ts';
import type { SubresourceKube } from './launcher-endpoint.ts';
import { SubresourceServer } from './subresource-server.ts';

const TOKEN = 'launcher-token-0123456789';
const WEBHOOK_TOKEN = 'webhooktoken0123456789abcdefghijklmnop';
const base = '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachines';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

async function certificates(dir: string): Promise<Record<string, Buffer>> {
  const ca = (name: string): void => openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`, '-days', '1']);
  const leaf = async (name: string, cn: string, signer: string, usage: string): Promise<void> => {
    openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    await writeFile(path.join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n`);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  };
  ca('front-proxy-ca');
  ca('other-ca');
  ca('serving-ca');
  await leaf('proxy', 'front-proxy-client', 'front-proxy-ca', 'clientAuth');
  await leaf('impostor', 'front-proxy-client', 'other-ca', 'clientAuth');
  await leaf('kubelet', 'kubelet', 'front-proxy-ca', 'clientAuth');
  await leaf('serving', 'localhost', 'serving-ca', 'serverAuth');
  const out: Record<string, Buffer> = {};
  for (const f of ['front-proxy-ca.crt', 'serving-ca.crt', 'proxy.crt', 'proxy.key', 'impostor.crt', 'impostor.key', 'kubelet.crt', 'kubelet.key']) out[f] = await readFile(path.join(dir, f));
  return out;
}

const vmObject = { metadata: { name: 'vm-1', namespace: 'ns-1', uid: 'uid-1' }, status: { phase: 'Running', launcherPod: 'launcher-vm-1' } };

/** The API server as a table: SAR allowed for alice only; vm-1 runs in launcher-vm-1 at 127.0.0.1. */
function fakeKube(sars: unknown[]): SubresourceKube {
  const notFound = (p: string): KubeApiError => new KubeApiError(404, 'NotFound', 'not found', { method: 'GET', path: p });
  return {
    get: (p: string) => {
      if (p === '/apis/keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachines/vm-1') return Promise.resolve(vmObject);
      if (p === '/api/v1/namespaces/ns-1/secrets/launcher-vm-1') {
        return Promise.resolve({
          metadata: { name: 'launcher-vm-1', ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'vm-1', uid: 'uid-1', controller: true }] },
          data: { token: Buffer.from(TOKEN).toString('base64') },
        });
      }
      if (p.startsWith('/api/v1/namespaces/ns-1/pods?')) {
        // The eviction webhook's list: launcher-vm-1 is a Running LiveMigrate launcher, launcher-vm-2 a Shutdown one.
        const wanted = new URLSearchParams(p.slice(p.indexOf('?') + 1)).get('fieldSelector')?.replace('metadata.name=', '');
        const pod = (name: string, vm: string, strategy: string): unknown => ({
          metadata: { name, namespace: 'ns-1', labels: { 'keyvirt.io/vm': vm, 'keyvirt.io/eviction-strategy': strategy } },
          spec: { containers: [] },
          status: { phase: 'Running' },
        });
        return Promise.resolve({ items: [pod('launcher-vm-1', 'vm-1', 'LiveMigrate'), pod('launcher-vm-2', 'vm-2', 'Shutdown')].filter((x) => (x as { metadata: { name: string } }).metadata.name === wanted) });
      }
      return Promise.reject(notFound(p));
    },
    create: (p: string, body: unknown) => {
      if (p !== '/apis/authorization.k8s.io/v1/subjectaccessreviews') return Promise.reject(notFound(p));
      sars.push(body);
      const user = (body as { spec: { user: string } }).spec.user;
      return Promise.resolve({ status: { allowed: user === 'alice', reason: user === 'alice' ? '' : 'no RBAC policy matched' } });
    },
    request: () =>
      Promise.resolve({ items: [{ metadata: { name: 'launcher-vm-1', namespace: 'ns-1', labels: { 'keyvirt.io/vm-uid': 'uid-1' } }, spec: { containers: [] }, status: { phase: 'Running', podIP: '127.0.0.1' } }] }),
    delete: (p: string) => Promise.reject(notFound(p)),
  };
}

const launcherStatus = {
  phase: 'Paused',
  reason: 'Paused',
  accelerator: 'tcg',
  qemu: { pid: 42, runState: 'paused' },
  guestAgent: { connected: false },
  guest: { interfaces: [] },
  disks: [],
  timestamps: { launcherStartedAt: '2026-01-01T00:00:00.000Z', phaseTransitionAt: '2026-01-01T00:00:01.000Z' },
};

/** A stand-in launcher: info, pause (409 the second time), and a console stream that echoes in upper case. */
async function fakeLauncher(): Promise<http.Server> {
  let paused = false;
  const server = http.createServer((req, res) => {
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(401, { error: { code: 'Unauthorized', message: 'token' } });
    if (req.url === '/v1/info') return json(200, { apiVersions: ['v1'], launcherVersion: '0.1.0', accelerator: 'tcg', acceleratorReason: 'test', mode: 'run', vm: { name: 'vm-1', namespace: 'ns-1', uid: 'uid-1' } });
    if (req.url === '/v1/actions/pause') {
      if (paused) return json(409, { error: { code: 'Conflict', message: 'the VM is already Paused' } });
      paused = true;
      return json(202, { accepted: true, action: 'pause', status: launcherStatus });
    }
    return json(404, { error: { code: 'NotFound', message: 'no route' } });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
    if (req.url !== '/v1/console' || req.headers.authorization !== `Bearer ${TOKEN}`) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: keyvirt-stream\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk: Buffer) => socket.write(chunk.toString('utf8').toUpperCase()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

void describe('subresource server', () => {
  let dir: string;
  let certs: Record<string, Buffer>;
  let server: SubresourceServer;
  let launcher: http.Server;
  let port: number;
  const sars: unknown[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kv-sub-'));
    certs = await certificates(dir);
    launcher = await fakeLauncher();
    const launcherPort = (launcher.address() as import('node:net').AddressInfo).port;
    const frontProxy: FrontProxyConfig = {
      caPem: certs['front-proxy-ca.crt']?.toString() ?? '',
      allowedNames: ['front-proxy-client'],
      usernameHeaders: ['x-remote-user'],
      uidHeaders: [],
      groupHeaders: ['x-remote-group'],
      extraHeaderPrefixes: ['x-remote-extra-'],
    };
    server = new SubresourceServer({
      client: fakeKube(sars),
      log: pino({ level: 'silent' }),
      certFile: path.join(dir, 'serving.crt'),
      keyFile: path.join(dir, 'serving.key'),
      frontProxy: () => frontProxy,
      launcherUrl: (ip) => `http://${ip}:${launcherPort}`,
      evictionWebhookToken: WEBHOOK_TOKEN,
    });
    port = (await server.listen('127.0.0.1', 0)).port;
  });

  after(async () => {
    await server.close();
    launcher.close();
    await rm(dir, { recursive: true, force: true });
  });

  const request = (client: 'proxy' | 'impostor' | 'kubelet' | 'none', method: string, p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const tls = client === 'none' ? {} : { cert: certs[`${client}.crt`], key: certs[`${client}.key`] };
      const req = https.request({ host: '127.0.0.1', port, path: p, method, ca: certs['serving-ca.crt'], headers, ...tls });
      req.once('error', reject);
      req.once('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.end();
    });

  const alice = { 'x-remote-user': 'alice', 'x-remote-group': 'dev' };

  /** A POST with a body and no client certificate, as the kube-apiserver calls a webhook. */
  const post = (p: string, body: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: p, method: 'POST', ca: certs['serving-ca.crt'], headers: { 'content-type': 'application/json' } });
      req.once('error', reject);
      req.once('response', (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.end(body);
    });
  const evictionReview = (name: string): string =>
    JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: `u-${name}`, resource: { group: '', version: 'v1', resource: 'pods' }, subResource: 'eviction', operation: 'CREATE', name, namespace: 'ns-1', object: { kind: 'Eviction' } },
    });

  it('the eviction webhook answers the kube-apiserver without a client certificate: 429 for a running LiveMigrate launcher, allowed otherwise', async () => {
    const refused = await post(`/admission/launcher-eviction/${WEBHOOK_TOKEN}?timeout=10s`, evictionReview('launcher-vm-1'));
    assert.equal(refused.status, 200, refused.body);
    const answer = JSON.parse(refused.body) as { kind: string; response: { uid: string; allowed: boolean; status?: { code: number; reason: string; message: string } } };
    assert.equal(answer.kind, 'AdmissionReview');
    assert.equal(answer.response.uid, 'u-launcher-vm-1');
    assert.equal(answer.response.allowed, false);
    assert.equal(answer.response.status?.code, 429);
    assert.equal(answer.response.status?.reason, 'TooManyRequests');
    assert.match(answer.response.status?.message ?? '', /VirtualMachine vm-1, whose evictionStrategy is LiveMigrate/);
    for (const name of ['launcher-vm-2', 'launcher-gone']) {
      const allowed = JSON.parse((await post(`/admission/launcher-eviction/${WEBHOOK_TOKEN}`, evictionReview(name))).body) as { response: { allowed: boolean; uid: string } };
      assert.deepEqual(allowed.response, { uid: `u-${name}`, allowed: true }, name);
    }
  });

  it('the eviction webhook is a 404 without its token, a 405 but for POST, a 400 naming what is wrong with a body that is no review', async () => {
    for (const p of ['/admission/launcher-eviction/', '/admission/launcher-eviction/wrong', `/admission/launcher-eviction/${WEBHOOK_TOKEN}x`, `/admission/launcher-eviction/${WEBHOOK_TOKEN.slice(1)}`]) {
      assert.equal((await post(p, evictionReview('launcher-vm-1'))).status, 404, p);
    }
    assert.equal((await request('none', 'GET', `/admission/launcher-eviction/${WEBHOOK_TOKEN}`)).status, 405);
    const notJson = await post(`/admission/launcher-eviction/${WEBHOOK_TOKEN}`, '{');
    assert.equal(notJson.status, 400);
    assert.match(notJson.body, /not an AdmissionReview/);
    const wrongKind = await post(`/admission/launcher-eviction/${WEBHOOK_TOKEN}`, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod', request: {} }));
    assert.equal(wrongKind.status, 400);
    assert.match(wrongKind.body, /kind must be AdmissionReview/);
  });

  for (const client of ['none', 'impostor', 'kubelet'] as const) {
    it(`refuses a client with ${client === 'none' ? 'no certificate' : `the ${client} certificate`} before routing, whatever its headers say`, async () => {
      for (const p of ['/apis', `${base}/vm-1/guestinfo`, '/nothing']) {
        const r = await request(client, 'GET', p, { 'x-remote-user': 'system:admin', 'x-remote-group': 'system:masters' });
        assert.equal(r.status, 401, `${p}: ${r.body}`);
        assert.equal((JSON.parse(r.body) as { kind: string; reason: string }).reason, 'Unauthorized');
      }
    });
  }

  it('serves discovery and health to the front proxy without a user', async () => {
    const list = await request('proxy', 'GET', '/apis/subresources.keyvirt.io/v1alpha1');
    assert.equal(list.status, 200);
    const doc = JSON.parse(list.body) as { kind: string; resources: { name: string; verbs: string[] }[] };
    assert.equal(doc.kind, 'APIResourceList');
    assert.deepEqual(doc.resources.find((r) => r.name === 'virtualmachines/console')?.verbs, ['get']);
    assert.deepEqual(doc.resources.find((r) => r.name === 'virtualmachines/migrate')?.verbs, ['update']);
    assert.equal((await request('proxy', 'GET', '/apis')).status, 200);
    assert.equal((await request('proxy', 'GET', '/healthz')).body, 'ok');
  });

  it('a proxied request without a user is 401, a denied one 403 naming the subresource', async () => {
    assert.equal((await request('proxy', 'PUT', `${base}/vm-1/pause`)).status, 401);
    const denied = await request('proxy', 'PUT', `${base}/vm-1/pause`, { 'x-remote-user': 'mallory' });
    assert.equal(denied.status, 403);
    assert.match(denied.body, /mallory.*cannot update resource \\"virtualmachines\/pause\\"/);
    const last = sars.at(-1) as { spec: { user: string; resourceAttributes: Record<string, string> } };
    assert.deepEqual(last.spec.resourceAttributes, { group: 'subresources.keyvirt.io', version: 'v1alpha1', resource: 'virtualmachines', subresource: 'pause', namespace: 'ns-1', name: 'vm-1', verb: 'update' });
  });

  it('pause reaches the launcher once, then its 409 comes back as a Conflict Status', async () => {
    const first = await request('proxy', 'PUT', `${base}/vm-1/pause`, alice);
    assert.equal(first.status, 202, first.body);
    assert.deepEqual(JSON.parse(first.body), { apiVersion: 'subresources.keyvirt.io/v1alpha1', kind: 'VirtualMachineActionResult', namespace: 'ns-1', name: 'vm-1', action: 'pause' });
    const again = await request('proxy', 'PUT', `${base}/vm-1/pause`, alice);
    assert.equal(again.status, 409);
    assert.match(again.body, /already Paused/);
  });

  it('a missing VM is 404 after the review, a bad route 404/405 before it', async () => {
    const before = sars.length;
    assert.equal((await request('proxy', 'GET', `${base}/vm-1/reboot-now`, alice)).status, 404);
    assert.equal((await request('proxy', 'GET', `${base}/vm-1/pause`, alice)).status, 405);
    assert.equal(sars.length, before, 'no review for a request that is refused anyway');
    const gone = await request('proxy', 'GET', `${base}/vm-9/guestinfo`, alice);
    assert.equal(gone.status, 404);
    assert.match(gone.body, /VirtualMachine ns-1\/vm-9 not found/);
  });

  const ws = (client: 'proxy' | 'impostor', user: string): Promise<{ ws?: WebSocket; status?: number }> =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(`wss://127.0.0.1:${port}${base}/vm-1/console`, ['plain.keyvirt.io'], {
        ca: certs['serving-ca.crt'], cert: certs[`${client}.crt`], key: certs[`${client}.key`], headers: { 'x-remote-user': user },
      });
      socket.once('open', () => resolve({ ws: socket }));
      socket.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
      socket.once('error', reject);
    });

  it('bridges a console websocket to the launcher stream both ways', async () => {
    const { ws: socket } = await ws('proxy', 'alice');
    assert.ok(socket);
    assert.equal(socket.protocol, 'plain.keyvirt.io');
    const reply = new Promise<string>((resolve) => socket.once('message', (d: Buffer) => resolve(d.toString())));
    socket.send(Buffer.from('hello'));
    assert.equal(await reply, 'HELLO');
    socket.close();
  });

  it('refuses websockets from strangers (401) and users without RBAC (403) before the launcher is dialled', async () => {
    assert.equal((await ws('impostor', 'alice')).status, 401);
    assert.equal((await ws('proxy', 'mallory')).status, 403);
  });
});

// The aggregated API server of subresources.keyvirt.io (ADR 0066), one per operator
// replica. Order for every request and upgrade: front-proxy certificate (401) → route
// (400/404/405) → discovery and health answered → user from X-Remote-* (401) →
// SubjectAccessReview (403) → the VM and its launcher (404/409/503) → the action or
// the websocket. Every failure is a Kubernetes Status; nothing a client sends can
// throw out of a handler. One path is outside that order: the launcher eviction webhook
// (ADR 0121), which the kube-apiserver calls without a client certificate, answered only
// under its path token.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { prettifyError, ZodError } from 'zod';
import { openLauncherStream } from '@keyvirt/launcher/api';
import { review } from './access-review.ts';
import { discoveryDocument } from './discovery.ts';
import { readUploadImage, relayUpload, uploadPart, uploadTarget } from './image-upload.ts';
import { SubresourceError } from './errors.ts';
import { checkFrontProxy, remoteUser, type FrontProxyConfig, type RemoteUser } from './front-proxy.ts';
import { launcherEndpoint, readVm, type SubresourceKube } from './launcher-endpoint.ts';
import { pathSegments, routeRequest, type RoutedRequest } from './request-routing.ts';
import { bridgeWebSocket, MAX_CLIENT_MESSAGE_BYTES } from './stream-bridge.ts';
import { cancelMigrations, createMigration, EmptyBodySchema, MigrateBodySchema, parseActionBody, readGuestInfo, runLauncherAction } from './vm-actions.ts';
import { launcherFailure } from './vm-actions.ts';
import { EVICTION_WEBHOOK_PATH, reviewEviction, webhookTokenMatches } from '../eviction-webhook/launcher-eviction.ts';

export const STREAM_SUBPROTOCOL = 'plain.keyvirt.io';
const MAX_BODY_BYTES = 64 * 1024;
const BODY_DEADLINE_MS = 30_000;
const LAUNCHER_CONNECT_TIMEOUT_MS = 10_000;

export interface SubresourceServerOptions {
  client: SubresourceKube;
  log: Logger;
  certFile: string;
  keyFile: string;
  /** The front-proxy settings now. */
  frontProxy: () => FrontProxyConfig | undefined;
  /** The launcher API's base URL for a pod IP; the VM controller's by default. */
  launcherUrl?: (ip: string) => string;
  /** The operator's namespace, where image import jobs run; without it uploads are not served. */
  operatorNamespace?: string | undefined;
  /** The launcher eviction webhook's path token (ADR 0121); without it the webhook is not served. */
  evictionWebhookToken?: string | undefined;
}

type Subresource = Extract<RoutedRequest, { kind: 'subresource' | 'image-upload' }>;
type ImageUpload = Extract<RoutedRequest, { kind: 'image-upload' }>;

function sendStatus(res: ServerResponse, err: SubresourceError): void {
  send(res, err.code, err.toStatus());
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** An error answer on a socket that asked for an upgrade (no ServerResponse there). */
function refuseUpgrade(socket: Duplex, err: SubresourceError): void {
  if (socket.destroyed) return;
  const text = JSON.stringify(err.toStatus());
  socket.end(
    `HTTP/1.1 ${err.code} ${http.STATUS_CODES[err.code] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

function asStatusError(err: unknown): SubresourceError {
  return err instanceof SubresourceError ? err : new SubresourceError(500, 'InternalError', 'internal error', { cause: err });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? '0');
  const tooLarge = (): SubresourceError => new SubresourceError(413, 'RequestEntityTooLarge', `the request body exceeds ${MAX_BODY_BYTES} bytes`);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  const deadline = setTimeout(() => req.destroy(new SubresourceError(408, 'BadRequest', 'the request body took too long')), BODY_DEADLINE_MS);
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
  } finally {
    clearTimeout(deadline);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export class SubresourceServer {
  readonly #o: SubresourceServerOptions;
  readonly #log: Logger;
  #server: https.Server | undefined;
  readonly #wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_CLIENT_MESSAGE_BYTES,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(STREAM_SUBPROTOCOL) ? STREAM_SUBPROTOCOL : false),
  });

  constructor(options: SubresourceServerOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'subresources' });
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const [cert, key] = await Promise.all([readFile(this.#o.certFile), readFile(this.#o.keyFile)]);
    const server = https.createServer({
      cert,
      key,
      minVersion: 'TLSv1.2',
      requestCert: true,
      // Verified per request against the requestheader CA (checkFrontProxy), so that the
      // answer to a stranger is a 401 Status rather than a failed handshake.
      rejectUnauthorized: false,
      ca: this.#o.frontProxy()?.caPem,
      maxHeaderSize: 16 * 1024,
      headersTimeout: 10_000,
      // An upload streams for as long as the image takes; small bodies have their own deadline (readBody).
      requestTimeout: 0,
      keepAliveTimeout: 60_000,
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err }, 'request handling failed');
        res.destroy();
      });
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      this.#upgrade(req, socket, head).catch((err: unknown) => {
        this.#log.error({ err }, 'upgrade handling failed');
        socket.destroy();
      });
    });
    server.setTimeout(120_000, (socket) => socket.destroy());
    server.on('tlsClientError', (err: Error) => this.#log.debug({ err }, 'TLS handshake failed'));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    this.#log.info({ address: address.address, port: address.port }, 'subresource server listening');
    return address;
  }

  /** New front-proxy settings (the CA bundle changed): new handshakes verify against it. */
  updateTrust(config: FrontProxyConfig, cert: Buffer, key: Buffer): void {
    this.#server?.setSecureContext({ cert, key, ca: config.caPem, minVersion: 'TLSv1.2' });
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    for (const ws of this.#wss.clients) ws.terminate();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The front-proxy check and the route; throws the Status to answer. */
  #admit(req: IncomingMessage, upgrade: boolean): { route: RoutedRequest; config: FrontProxyConfig } {
    const config = this.#o.frontProxy();
    const socket = req.socket;
    const tls = socket instanceof TLSSocket ? socket : undefined;
    const peer = tls?.getPeerCertificate();
    const commonName = typeof peer?.subject?.CN === 'string' ? peer.subject.CN : undefined;
    const authorized = tls?.authorized === true;
    const decision = config === undefined ? { ok: false as const, why: 'the front-proxy settings are not loaded yet' } : checkFrontProxy({ authorized, commonName }, config);
    if (!decision.ok || config === undefined) {
      this.#log.debug({ why: decision.ok ? 'no settings' : decision.why }, 'request refused: not from the front proxy');
      throw new SubresourceError(401, 'Unauthorized', 'only requests proxied by the kube-apiserver are served');
    }
    return { route: routeRequest(req.method ?? 'GET', pathSegments(req.url), upgrade), config };
  }

  /** The user, the SAR, the VM: everything a subresource request needs before it acts. */
  async #authorise(req: IncomingMessage, route: Subresource, config: FrontProxyConfig): Promise<RemoteUser> {
    const user = remoteUser(req.headersDistinct, config);
    if (user === undefined) throw new SubresourceError(401, 'Unauthorized', 'the request carries no authenticated user');
    const resource = route.kind === 'image-upload' ? route.resource : 'virtualmachines';
    const answer = await review(this.#o.client, { user, verb: route.verb, namespace: route.namespace, name: route.name, subresource: route.subresource, resource });
    if (!answer.allowed) throw new SubresourceError(403, 'Forbidden', answer.message);
    return user;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.url?.startsWith(EVICTION_WEBHOOK_PATH) === true) {
      await this.#evictionReview(req, res);
      return;
    }
    try {
      const { route, config } = this.#admit(req, false);
      if (route.kind === 'health') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        return;
      }
      if (route.kind === 'discovery') {
        send(res, 200, discoveryDocument(route.document));
        return;
      }
      const user = await this.#authorise(req, route, config);
      if (route.kind === 'image-upload') {
        await this.#upload(req, res, route, user);
        return;
      }
      const body = await readBody(req);
      const vm = await readVm(this.#o.client, route.namespace, route.name);
      const log = this.#log.child({ namespace: route.namespace, name: route.name, subresource: route.subresource, user: user.username });
      switch (route.subresource) {
        case 'pause':
        case 'unpause':
        case 'soft-reboot':
          parseActionBody(EmptyBodySchema, body);
          send(res, 202, await runLauncherAction(vm, await launcherEndpoint(this.#o.client, vm, this.#o.launcherUrl), route.subresource));
          break;
        case 'guestinfo':
          send(res, 200, await readGuestInfo(vm, await launcherEndpoint(this.#o.client, vm, this.#o.launcherUrl)));
          break;
        case 'migrate':
          send(res, 201, await createMigration(this.#o.client, vm, parseActionBody(MigrateBodySchema, body), user.username));
          break;
        case 'migrate-cancel':
          parseActionBody(EmptyBodySchema, body);
          send(res, 200, await cancelMigrations(this.#o.client, vm));
          break;
        case 'console':
        case 'vnc':
          throw new SubresourceError(400, 'BadRequest', `virtualmachines/${route.subresource} is a websocket`);
      }
      log.info('subresource request served');
    } catch (err) {
      const status = asStatusError(err);
      if (status.code >= 500) this.#log.error({ err }, 'subresource request failed');
      else this.#log.debug({ code: status.code, reason: status.reason, message: status.message }, 'subresource request refused');
      if (!res.headersSent) sendStatus(res, status);
      else res.end();
    }
  }

  /**
   * The launcher eviction webhook (ADR 0121), called by the kube-apiserver with no client
   * certificate: the path's token is the check. A wrong token is a 404, as any unknown path.
   */
  async #evictionReview(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const token = this.#o.evictionWebhookToken;
      if (token === undefined || !webhookTokenMatches(req.url, token)) throw new SubresourceError(404, 'NotFound', 'the requested path is not served');
      if (req.method !== 'POST') throw new SubresourceError(405, 'MethodNotAllowed', 'the eviction webhook takes POST');
      const body = await readBody(req);
      let reviewed: Awaited<ReturnType<typeof reviewEviction>>;
      try {
        reviewed = await reviewEviction(this.#o.client, body);
      } catch (err) {
        if (err instanceof SyntaxError || err instanceof ZodError) throw new SubresourceError(400, 'BadRequest', `not an AdmissionReview: ${err instanceof ZodError ? prettifyError(err) : err.message}`);
        throw err;
      }
      const { namespace, name } = reviewed.review.request;
      if (reviewed.verdict.allowed) this.#log.debug({ namespace, name, why: reviewed.verdict.why }, 'eviction allowed');
      else this.#log.info({ namespace, name }, 'eviction of a LiveMigrate launcher refused (429)');
      send(res, 200, reviewed.answer);
    } catch (err) {
      const status = asStatusError(err);
      if (status.code >= 500) this.#log.error({ err }, 'eviction review failed');
      if (!res.headersSent) sendStatus(res, status);
      else res.end();
    }
  }

  /** The image's bytes, relayed as a stream to its import job (ADR 0097). */
  async #upload(req: IncomingMessage, res: ServerResponse, route: ImageUpload, user: RemoteUser): Promise<void> {
    const operatorNamespace = this.#o.operatorNamespace;
    if (operatorNamespace === undefined) throw new SubresourceError(503, 'ServiceUnavailable', 'this server does not serve uploads');
    const upload = uploadPart(req.url, req.headers['content-length']);
    const image = await readUploadImage(this.#o.client, route.namespace, route.name);
    const target = await uploadTarget(this.#o.client, image, operatorNamespace);
    const log = this.#log.child({ namespace: route.namespace, name: route.name, subresource: 'upload', user: user.username, job: target.podName });
    log.info({ bytes: upload.length, offset: upload.part?.offset, size: upload.part?.size }, 'image upload started');
    const said = await relayUpload(req, target, upload);
    log.info({ bytes: upload.length, offset: upload.part?.offset }, 'image upload relayed');
    send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 200, message: said });
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let launcher: Duplex | undefined;
    let route: RoutedRequest;
    let user: RemoteUser;
    try {
      if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') throw new SubresourceError(400, 'BadRequest', 'only websocket upgrades are served');
      // Checked before the launcher's stream is opened, so that a handshake ws would refuse never holds a session.
      const key = req.headers['sec-websocket-key'] ?? '';
      if (req.headers['sec-websocket-version'] !== '13' || !/^[+/0-9A-Za-z]{22}==$/.test(key)) {
        throw new SubresourceError(400, 'BadRequest', 'not a valid websocket handshake (version 13 and a key are required)');
      }
      const admitted = this.#admit(req, true);
      route = admitted.route;
      if (route.kind !== 'subresource') throw new SubresourceError(400, 'BadRequest', 'only the console and vnc subresources are websockets');
      user = await this.#authorise(req, route, admitted.config);
      const vm = await readVm(this.#o.client, route.namespace, route.name);
      const endpoint = await launcherEndpoint(this.#o.client, vm, this.#o.launcherUrl);
      const kind = route.subresource === 'vnc' ? 'vnc' : 'console';
      try {
        launcher = await openLauncherStream({ baseUrl: endpoint.baseUrl, token: endpoint.token, kind, timeoutMs: LAUNCHER_CONNECT_TIMEOUT_MS });
      } catch (err) {
        throw launcherFailure(vm, `open the ${kind}`, err);
      }
    } catch (err) {
      const status = asStatusError(err);
      if (status.code >= 500) this.#log.error({ err }, 'stream request failed');
      else this.#log.debug({ code: status.code, reason: status.reason, message: status.message }, 'stream request refused');
      refuseUpgrade(socket, status);
      return;
    }
    const stream = launcher;
    const log = this.#log.child({ namespace: route.namespace, name: route.name, subresource: route.subresource, user: user.username });
    // ws calls back only for a handshake it completes: a user gone meanwhile must not
    // leave the launcher's stream (and its one-session slot) open.
    let adopted = false;
    socket.once('close', () => {
      if (!adopted) stream.destroy();
    });
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      adopted = true;
      log.info('stream session opened');
      void bridgeWebSocket(ws, stream, log).then((endedBy) => log.info({ endedBy }, 'stream session closed'));
    });
  }
}

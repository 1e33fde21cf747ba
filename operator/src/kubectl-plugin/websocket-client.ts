// A websocket (RFC 6455) to a path of the API server, authenticated with the kubeconfig
// like any request, exposed as a Duplex: what the server sends in data frames is read,
// what is written goes out as binary frames, end() closes with 1000. An answer other
// than 101 fails the connect with the API server's Status (KubeApiError), so callers
// report 403/404/409 like any other API error. Pings are answered; no idle timeout.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { KubeApiError, KubeTimeoutError, KubeTransportError } from '../runtime/kube-client.ts';
import {
  closePayload, encodeClientFrame, FrameDecoder, MessageAssembler, OPCODE, parseClosePayload, WebSocketProtocolError,
} from './websocket-frames.ts';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const statusBody = z.object({ message: z.string().optional(), reason: z.string().optional() });

export interface WebSocketOptions {
  readonly protocols?: readonly string[];
  /** Deadline of the handshake (the open stream has none). */
  readonly timeoutMs: number;
  /** Read one Buffer per websocket message instead of a byte stream (channel protocols). */
  readonly messages?: boolean;
}

export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** One open websocket as a byte stream. `whenClosed` settles when the socket is gone. */
export class WebSocketStream extends Duplex {
  readonly protocol: string | undefined;
  readonly whenClosed: Promise<CloseInfo>;
  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder();
  readonly #assembler = new MessageAssembler();
  #closeSent = false;
  #closeInfo: CloseInfo | undefined;
  #resolveClosed: (info: CloseInfo) => void = () => undefined;

  constructor(socket: Socket, head: Buffer, protocol: string | undefined, messages = false) {
    super({ readableObjectMode: messages });
    this.#socket = socket;
    this.protocol = protocol;
    this.whenClosed = new Promise((resolve) => (this.#resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#finish({ code: 1006, reason: 'connection ended without a close frame' }));
    socket.on('close', () => this.#finish({ code: 1006, reason: 'connection closed without a close frame' }));
    socket.on('error', (err) => this.#finish({ code: 1006, reason: err.message }));
    if (head.length > 0) queueMicrotask(() => this.#onData(head));
  }

  #onData(chunk: Buffer): void {
    try {
      for (const frame of this.#decoder.push(chunk)) {
        const message = this.#assembler.accept(frame);
        if (message !== undefined) this.#onMessage(message.opcode, message.payload);
      }
    } catch (err) {
      const reason = err instanceof WebSocketProtocolError ? err.message : 'bad frame';
      this.#sendClose(1002, reason);
      this.#finish({ code: 1002, reason });
    }
  }

  #onMessage(opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OPCODE.ping:
        this.#socket.write(encodeClientFrame(OPCODE.pong, payload));
        return;
      case OPCODE.pong:
        return;
      case OPCODE.close: {
        const info = parseClosePayload(payload);
        this.#sendClose(info.code === 1005 ? 1000 : info.code, '');
        this.#finish(info);
        return;
      }
      default:
        if (!this.push(payload)) this.#socket.pause();
    }
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent || this.#socket.destroyed) return;
    this.#closeSent = true;
    this.#socket.write(encodeClientFrame(OPCODE.close, closePayload(code, reason)));
  }

  #finish(info: CloseInfo): void {
    if (this.#closeInfo !== undefined) return;
    this.#closeInfo = info;
    this.push(null);
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
    this.#resolveClosed(info);
  }

  override _read(): void {
    if (this.#socket.isPaused()) this.#socket.resume();
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#closeInfo !== undefined || this.#closeSent) {
      callback(new KubeTransportError('the websocket is closed'));
      return;
    }
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (this.#socket.write(encodeClientFrame(OPCODE.binary, data))) callback();
    else this.#socket.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#sendClose(1000, '');
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#sendClose(1000, '');
    this.#finish({ code: 1000, reason: 'closed by the client' });
    callback(error);
  }
}

function acceptKey(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of res) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/** Opens a websocket to `path` (with query) on the kubeconfig's current cluster. */
export async function openWebSocket(kc: KubeConfig, path: string, options: WebSocketOptions): Promise<WebSocketStream> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new KubeTransportError('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const key = randomBytes(16).toString('base64');
  const headers: Record<string, string> = {
    connection: 'Upgrade',
    upgrade: 'websocket',
    'sec-websocket-version': '13',
    'sec-websocket-key': key,
  };
  if (options.protocols !== undefined && options.protocols.length > 0) headers['sec-websocket-protocol'] = options.protocols.join(', ');
  const requestOptions: https.RequestOptions = { method: 'GET', headers };
  await kc.applyToHTTPSOptions(requestOptions);
  const request = url.protocol === 'https:' ? https.request(url, requestOptions) : http.request(url, requestOptions);
  return new Promise<WebSocketStream>((resolve, reject) => {
    const timer = setTimeout(() => {
      request.destroy();
      reject(new KubeTimeoutError(`GET ${path}: no websocket handshake within ${String(options.timeoutMs)} ms`));
    }, options.timeoutMs);
    request.on('error', (err) => {
      clearTimeout(timer);
      reject(new KubeTransportError(`GET ${path} failed: ${err.message}`, { cause: err }));
    });
    request.on('response', (res) => {
      clearTimeout(timer);
      readBody(res).then(
        (text) => reject(apiError(res.statusCode ?? 0, text, path)),
        (err: unknown) => reject(new KubeTransportError(`GET ${path}: answer broke`, { cause: err })),
      );
    });
    request.on('upgrade', (res, socket, head) => {
      clearTimeout(timer);
      if (res.headers['sec-websocket-accept'] !== acceptKey(key)) {
        socket.destroy();
        reject(new KubeTransportError(`GET ${path}: the server's websocket handshake is invalid`));
        return;
      }
      const protocol = res.headers['sec-websocket-protocol'];
      resolve(new WebSocketStream(socket, head, typeof protocol === 'string' ? protocol : undefined, options.messages));
    });
    request.end();
  });
}

function apiError(status: number, text: string, path: string): KubeApiError {
  let reason = 'Unknown';
  let message = text.trim();
  try {
    const parsed = statusBody.safeParse(JSON.parse(text));
    if (parsed.success) {
      reason = parsed.data.reason ?? reason;
      message = parsed.data.message ?? message;
    }
  } catch {
    // not a Status: the text is the message
  }
  return new KubeApiError(status, reason, message === '' ? `HTTP ${String(status)}` : message, { method: 'GET', path });
}

// A websocket from the user (through the kube-apiserver) joined to the launcher's raw
// console or VNC stream (ADR 0066). Bytes pass as they are: binary frames to the user,
// binary or text frames from the user written to the guest. Flow control both ways: the
// launcher side is paused while more than HIGH_WATER_BYTES wait to go to the user, the
// websocket is paused while the launcher socket refuses writes. No idle timeout: the
// server pings every PING_INTERVAL_MS and drops a peer silent for PEER_TIMEOUT_MS.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';

export const PING_INTERVAL_MS = 15_000;
export const PEER_TIMEOUT_MS = 45_000;
/** Largest message accepted from the user (keystrokes and RFB client messages are tiny). */
export const MAX_CLIENT_MESSAGE_BYTES = 1024 * 1024;
const HIGH_WATER_BYTES = 1024 * 1024;
const LOW_WATER_BYTES = 256 * 1024;

export const WS_CLOSE = { normal: 1000, internal: 1011 } as const;

export interface BridgeTiming {
  pingIntervalMs: number;
  peerTimeoutMs: number;
  now: () => number;
}

const DEFAULT_TIMING: BridgeTiming = { pingIntervalMs: PING_INTERVAL_MS, peerTimeoutMs: PEER_TIMEOUT_MS, now: () => performance.now() };

/** Whether a peer last heard of at `lastHeardMs` is gone at `nowMs` (pure). */
export function peerGone(lastHeardMs: number, nowMs: number, peerTimeoutMs: number): boolean {
  return nowMs - lastHeardMs > peerTimeoutMs;
}

/** Joins `ws` and `launcher` until either ends; resolves with who ended it. */
export function bridgeWebSocket(ws: WebSocket, launcher: Duplex, log: Logger, timing: BridgeTiming = DEFAULT_TIMING): Promise<'user' | 'launcher' | 'peer-timeout' | 'error'> {
  return new Promise((resolve) => {
    let lastHeard = timing.now();
    let finished = false;
    const finish = (who: 'user' | 'launcher' | 'peer-timeout' | 'error', code: number, reason: string): void => {
      if (finished) return;
      finished = true;
      clearInterval(pinger);
      launcher.destroy();
      if (who === 'peer-timeout') ws.terminate();
      else if (ws.readyState === ws.OPEN) ws.close(code, reason);
      else ws.terminate();
      resolve(who);
    };
    const pinger = setInterval(() => {
      if (peerGone(lastHeard, timing.now(), timing.peerTimeoutMs)) {
        log.info('websocket peer silent; dropping the session');
        finish('peer-timeout', WS_CLOSE.normal, 'peer timeout');
        return;
      }
      ws.ping();
    }, timing.pingIntervalMs);
    const heard = (): void => {
      lastHeard = timing.now();
    };
    ws.on('pong', heard);
    ws.on('ping', heard);
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      heard();
      const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (!launcher.write(chunk)) {
        ws.pause();
        launcher.once('drain', () => ws.resume());
      }
    });
    launcher.on('data', (chunk: Buffer) => {
      ws.send(chunk, { binary: true }, () => {
        if (launcher.isPaused() && ws.bufferedAmount < LOW_WATER_BYTES) launcher.resume();
      });
      if (ws.bufferedAmount > HIGH_WATER_BYTES) launcher.pause();
    });
    launcher.once('end', () => finish('launcher', WS_CLOSE.normal, 'the stream ended'));
    launcher.once('close', () => finish('launcher', WS_CLOSE.normal, 'the stream ended'));
    launcher.once('error', (err: Error) => {
      log.debug({ err }, 'launcher stream failed');
      finish('error', WS_CLOSE.internal, 'the launcher stream failed');
    });
    ws.once('close', () => finish('user', WS_CLOSE.normal, ''));
    ws.once('error', (err: Error) => {
      log.debug({ err }, 'websocket failed');
      finish('error', WS_CLOSE.internal, '');
    });
  });
}

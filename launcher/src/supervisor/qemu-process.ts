// Starts QEMU in the foreground (no -daemonize: the launcher is its parent and sees its
// exit), keeps the tail of its stderr for failure messages, and opens the QMP session
// once QEMU has created its socket.
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { QmpClient } from '../qmp/client.ts';

export class QemuStartError extends Error {
  override name = 'QemuStartError';
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface QemuProcess {
  pid: number;
  exited: Promise<QemuExit>;
  /** The last lines QEMU wrote to stderr. */
  stderrTail: () => string;
  /** True until QEMU has exited. */
  alive: () => boolean;
  /** SIGKILL to QEMU (nothing once it has exited). */
  kill: () => void;
}

/** Starts QEMU: as the launcher's child (spawnQemu), or through the pod that holds it (pod-host.ts). */
export type QemuSpawner = (binary: string, args: readonly string[], logger: Logger) => Promise<QemuProcess>;

const STDERR_LINES = 20;

export function spawnQemu(binary: string, args: readonly string[], logger: Logger): QemuProcess {
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const tail: string[] = [];
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (line.trim() === '') continue;
      logger.warn({ stderr: line }, 'qemu stderr');
      tail.push(line);
      if (tail.length > STDERR_LINES) tail.shift();
    }
  });
  const exited = new Promise<QemuExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      tail.push(err.message);
      resolve({ code: 127, signal: null });
    });
  });
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    pid: child.pid ?? -1,
    exited,
    stderrTail: () => tail.join('\n'),
    alive,
    kill: () => {
      if (alive()) child.kill('SIGKILL');
    },
  };
}

/** Connects to QMP, retrying while QEMU creates its socket; fails when QEMU exits first or time runs out. */
export async function connectQmp(
  proc: QemuProcess,
  socketPath: string,
  logger: Logger,
  timeoutMs: number,
  connect?: (path: string) => Socket,
): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (exited) throw new QemuStartError(`QEMU exited during start: ${proc.stderrTail() || 'no output'}`);
    try {
      return await QmpClient.connect({ path: socketPath, logger, handshakeTimeoutMs: Math.max(1000, deadline - Date.now()), ...(connect === undefined ? {} : { connect }) });
    } catch (err) {
      lastError = err;
      await sleep(50);
    }
  }
  throw new QemuStartError(`no QMP session with QEMU within ${timeoutMs} ms`, { cause: lastError });
}

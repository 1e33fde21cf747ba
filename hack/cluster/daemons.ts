// Background processes of the local cluster: started detached with their output in
// .keyvirt/logs/<name>.log and their pid in .keyvirt/run/<name>.pid, found again by
// that pid (checked against the command line so a recycled pid is never signalled).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterLayout } from './layout.ts';

export class ClusterStartError extends Error {
  override readonly name = 'ClusterStartError';
}

export interface DaemonSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** A string every genuine instance carries in its command line. */
  readonly marker: string;
}

function pidFile(layout: ClusterLayout, name: string): string {
  return path.join(layout.runDir, `${name}.pid`);
}

export function readCmdline(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return undefined;
  }
}

/** The pid of a running daemon, or undefined when it is not running. */
export function daemonPid(layout: ClusterLayout, name: string, marker: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(pidFile(layout, name), 'utf8').trim();
  } catch {
    return undefined;
  }
  const pid = Number(text);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const cmdline = readCmdline(pid);
  if (cmdline?.includes(marker) !== true) return undefined;
  if (processState(pid) === 'Z') return undefined;
  return pid;
}

/** The state letter of /proc/<pid>/stat (R, S, T, Z, …), or undefined when the process is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

export function startDaemon(layout: ClusterLayout, spec: DaemonSpec): number {
  if (!fs.existsSync(spec.command)) {
    throw new ClusterStartError(`${spec.name}: binary ${spec.command} is missing (run hack/k8s/build.sh)`);
  }
  fs.mkdirSync(layout.logDir, { recursive: true });
  fs.mkdirSync(layout.runDir, { recursive: true });
  const logPath = path.join(layout.logDir, `${spec.name}.log`);
  const log = fs.openSync(logPath, 'a');
  try {
    const child = spawn(spec.command, [...spec.args], {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, ...spec.env },
      cwd: layout.root,
    });
    if (child.pid === undefined) throw new ClusterStartError(`${spec.name}: could not start ${spec.command}`);
    child.unref();
    fs.writeFileSync(pidFile(layout, spec.name), `${child.pid}\n`);
    return child.pid;
  } finally {
    fs.closeSync(log);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return processState(pid) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL; removes the pid file. */
export async function stopDaemon(layout: ClusterLayout, name: string, marker: string, graceMs = 10_000): Promise<boolean> {
  const pid = daemonPid(layout, name, marker);
  fs.rmSync(pidFile(layout, name), { force: true });
  if (pid === undefined) return false;
  await terminate(pid, graceMs);
  return true;
}

export async function terminate(pid: number, graceMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(100);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  while (isAlive(pid)) await sleep(50);
}

/** Fails with a clear message when something else already listens on host:port. */
export async function assertPortFree(host: string, port: number, what: string): Promise<void> {
  const inUse = await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(1000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => resolve(false));
  });
  if (inUse) {
    throw new ClusterStartError(`${what}: port ${host}:${port} is already in use by another process (see: ss -ltnp 'sport = :${port}')`);
  }
}

/** Polls `probe` until it resolves true; fails with the tail of the daemon's log. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  options: { timeoutMs: number; logPath?: string; pid?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    if (options.pid !== undefined && !isAlive(options.pid)) {
      throw new ClusterStartError(`${what} exited during start-up${logTail(options.logPath)}`);
    }
    await sleep(250);
  }
  throw new ClusterStartError(`${what} not ready after ${options.timeoutMs} ms${logTail(options.logPath)}`);
}

function logTail(logPath: string | undefined): string {
  if (logPath === undefined) return '';
  try {
    const lines = fs.readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-15);
    return `; last lines of ${logPath}:\n${lines.join('\n')}`;
  } catch {
    return '';
  }
}

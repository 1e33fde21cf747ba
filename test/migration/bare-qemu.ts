// Bare QEMU live migration, no launcher: the baseline the migration benchmark compares
// KeyVirt against. Two QEMU processes started from the same machine plan the launcher
// would use (optionally the target inside a peer network namespace), and a plain QMP
// script: capabilities, parameters, migrate, poll, re-query for the final times.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { QmpClient } from '../../launcher/src/qmp/client.ts';
import type { QmpEvent } from '../../launcher/src/qmp/messages.ts';
import { buildQemuArgs, type MachinePlan } from '../../launcher/src/qemu/command-line.ts';

export interface BareQemu {
  readonly qmp: QmpClient;
  readonly process: ChildProcess;
  readonly serialLog: string;
  stop(): Promise<void>;
}

export interface BareQemuOptions {
  /** The machine; its sockets and serial log are replaced by paths in a temp dir. */
  readonly plan: MachinePlan;
  readonly incoming?: boolean;
  /** Command prefix, e.g. `ip netns exec <peer>`. */
  readonly netnsExec?: readonly string[];
  readonly logger: Logger;
}

async function waitForSocket(file: string, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`QEMU exited with ${proc.exitCode} before its QMP socket appeared`);
    if (await stat(file).then(() => true, () => false)) return;
    await sleep(20);
  }
  throw new Error(`QMP socket ${file} did not appear within ${timeoutMs} ms`);
}

/** Starts QEMU straight from a machine plan, no launcher in between. */
export async function startBareQemu(options: BareQemuOptions): Promise<BareQemu> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-bare-'));
  const sockets = { qmp: path.join(dir, 'qmp.sock'), serial: path.join(dir, 'serial.sock') };
  const serialLog = path.join(dir, 'serial.log');
  const plan: MachinePlan = {
    ...options.plan,
    sockets: { ...sockets, ...(options.plan.sockets.guestAgent === undefined ? {} : { guestAgent: path.join(dir, 'qga.sock') }) },
    serialLog,
    ...(options.incoming === true ? { incoming: 'defer' as const } : {}),
  };
  const argv = [...(options.netnsExec ?? []), 'qemu-system-x86_64', ...buildQemuArgs(plan)];
  const [cmd = 'qemu-system-x86_64', ...args] = argv;
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const stop = async (): Promise<void> => {
    qmp?.close();
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  };
  let qmp: QmpClient | undefined;
  try {
    await waitForSocket(sockets.qmp, proc, 30_000);
    qmp = await QmpClient.connect({ path: sockets.qmp, logger: options.logger });
  } catch (err) {
    await stop();
    throw new Error(`bare QEMU did not start: ${(err as Error).message}; stderr: ${stderr}`, { cause: err });
  }
  return { qmp, process: proc, serialLog, stop };
}

const empty = z.object({}).loose();
const queryMigrate = z
  .object({
    status: z.string().optional(),
    'total-time': z.number().optional(),
    downtime: z.number().optional(),
    'setup-time': z.number().optional(),
    'socket-address': z.array(z.object({ port: z.string().optional() }).loose()).optional(),
  })
  .loose();

export interface BareMigrationOptions {
  /** Address the target listens on (its namespace's address, or 127.0.0.1). */
  readonly host: string;
  readonly downtimeLimitMs: number;
  readonly autoConverge: boolean;
  /** Cancel (and report not converged) after this long. */
  readonly timeoutMs: number;
}

export interface BareMigrationResult {
  readonly status: string;
  readonly totalTimeMs: number | null;
  readonly downtimeMs: number | null;
  readonly setupTimeMs: number | null;
  /** Source STOP → target RESUME, from the QMP event timestamps. */
  readonly pauseMs: number | null;
}

type QueryMigrate = z.infer<typeof queryMigrate>;

/** Polls until a terminal state, cancelling after the timeout; re-queries for QEMU 7.2's late times. */
async function followToEnd(source: QmpClient, started: number, timeoutMs: number): Promise<QueryMigrate> {
  let info = await source.execute('query-migrate', undefined, queryMigrate);
  while (!['completed', 'failed', 'cancelled'].includes(info.status ?? '')) {
    if (Date.now() - started > timeoutMs && info.status !== 'cancelling') {
      await source.execute('migrate_cancel', undefined, empty);
    }
    await sleep(50);
    info = await source.execute('query-migrate', undefined, queryMigrate);
  }
  for (let i = 0; i < 40 && info.status === 'completed' && !((info['total-time'] ?? 0) > 0 && info.downtime !== undefined); i++) {
    await sleep(50);
    info = await source.execute('query-migrate', undefined, queryMigrate);
  }
  return info;
}

function micros(e: QmpEvent): number {
  return e.timestamp.seconds * 1e6 + e.timestamp.microseconds;
}

/** Migrates source → target with plain QMP commands. */
export async function bareMigrate(source: QmpClient, target: QmpClient, opts: BareMigrationOptions): Promise<BareMigrationResult> {
  let stoppedAt: number | null = null;
  let resumedAt: number | null = null;
  const onSource = (e: QmpEvent): void => {
    if (e.event === 'STOP') stoppedAt = micros(e);
  };
  const onTarget = (e: QmpEvent): void => {
    if (e.event === 'RESUME') resumedAt ??= micros(e);
  };
  source.on('event', onSource);
  target.on('event', onTarget);
  try {
    const events = [{ capability: 'events', state: true }];
    await target.execute('migrate-set-capabilities', { capabilities: events }, empty);
    await target.execute('migrate-incoming', { uri: `tcp:${opts.host}:0` }, empty);
    const listening = await target.execute('query-migrate', undefined, queryMigrate);
    const port = Number(listening['socket-address']?.[0]?.port);
    await source.execute(
      'migrate-set-capabilities',
      { capabilities: [...events, { capability: 'auto-converge', state: opts.autoConverge }] },
      empty,
    );
    await source.execute('migrate-set-parameters', { 'downtime-limit': opts.downtimeLimitMs, 'max-bandwidth': 2 ** 50 }, empty);
    const started = Date.now();
    await source.execute('migrate', { uri: `tcp:${opts.host}:${port}` }, empty);
    const info = await followToEnd(source, started, opts.timeoutMs);
    for (let i = 0; i < 50 && info.status === 'completed' && resumedAt === null; i++) await sleep(20);
    const s: number | null = stoppedAt;
    const r: number | null = resumedAt;
    return {
      status: info.status ?? 'none',
      totalTimeMs: info['total-time'] ?? null,
      downtimeMs: info.status === 'completed' ? (info.downtime ?? null) : null,
      setupTimeMs: info['setup-time'] ?? null,
      pauseMs: info.status === 'completed' && s !== null && r !== null ? (r - s) / 1000 : null,
    };
  } finally {
    source.off('event', onSource);
    target.off('event', onTarget);
  }
}

// Runs the real launcher (node launcher/src/main.ts) on the test guest for integration
// tests and benchmarks: a temp dir with a disk, a token and the configuration, the
// launcher's JSON log captured, a typed API client. dispose() kills what is still
// running (by pid: the launcher and the QEMU it started) and removes the dir.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LauncherConfigInput } from '@keyvirt/launcher/api';
import { LauncherClient } from '@keyvirt/launcher/api';
import { createBlankDisk, parseCounterLines, testGuest } from '../support/guest.ts';
import type { CounterRecord } from '../support/guest.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const mainScript = path.join(repoRoot, 'launcher', 'src', 'main.ts');

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface RunningLauncher {
  dir: string;
  stateDir: string;
  disk: string;
  token: string;
  client: LauncherClient;
  baseUrl: string;
  process: ChildProcess;
  /** Date.now() just before the launcher process was spawned. */
  startedAt: number;
  /** Resolves with the launcher's exit code (or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  logs: () => LogLine[];
  serial: () => Promise<string>;
  counters: () => Promise<CounterRecord[]>;
  waitForSerial: (pattern: RegExp, timeoutMs: number) => Promise<RegExpExecArray>;
  dispose: () => Promise<void>;
}

export interface LauncherTestOptions {
  /** Changes to the default configuration (template and top-level fields). */
  configure?: (config: LauncherConfigInput) => LauncherConfigInput;
  /** Extra launcher environment. */
  env?: NodeJS.ProcessEnv;
}

export async function testConfig(dir: string, disk: string, tokenFile: string): Promise<LauncherConfigInput> {
  const guest = await testGuest();
  return {
    apiVersion: 'launcher.keyvirt.io/v1',
    vm: { name: 'guest-1', namespace: 'kv-test', uid: '2b9c7f5e-3d1a-4c8e-9f00-6a1b2c3d4e5f' },
    template: {
      cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
      memory: { size: '256Mi' },
      disks: [{ name: 'root', persistentVolumeClaim: { claimName: 'guest-1-root' } }],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: '52:54:00:4b:56:01' }],
      guestAgent: true,
      allowEmulation: true,
    },
    terminationGracePeriodSeconds: 60,
    disks: { root: { path: disk, format: 'raw' } },
    listen: { address: '127.0.0.1', port: 0 },
    tokenFile,
    stateDir: path.join(dir, 'state'),
    directKernelBoot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
    qemu: { vnc: false },
    guestAgent: { pollIntervalMs: 1000, retryIntervalMs: 500 },
  };
}

function parseLog(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine];
      } catch {
        return [];
      }
    });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts a launcher and waits until its API listens. */
export async function startLauncher(options: LauncherTestOptions = {}): Promise<RunningLauncher> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-launcher-'));
  const disk = await createBlankDisk(dir, { format: 'raw', sizeMiB: 64, name: 'root.raw' });
  const token = randomBytes(24).toString('hex');
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const base = await testConfig(dir, disk, tokenFile);
  const config = options.configure === undefined ? base : options.configure(base);
  const configFile = path.join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const stateDir = path.join(dir, 'state');
  const startedAt = Date.now();
  const child = spawn(process.execPath, [mainScript, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KEYVIRT_LOG_LEVEL: 'debug', ...options.env },
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const logs = (): LogLine[] => parseLog(output);
  const qemuPids = (): number[] =>
    logs()
      .map((l) => l.qemuPid)
      .filter((p): p is number => typeof p === 'number');
  let port: number | undefined;
  const serialLog = path.join(stateDir, 'serial.log');
  const serial = (): Promise<string> => readFile(serialLog, 'utf8').catch(() => '');
  const api: { client?: LauncherClient } = {};
  let lastQemuPid: number | undefined;
  const dispose = async (): Promise<void> => {
    if (api.client !== undefined) {
      const status = await api.client.status().catch(() => undefined);
      lastQemuPid = status?.qemu.pid ?? lastQemuPid;
    }
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    for (const pid of [lastQemuPid, ...qemuPids()]) {
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 60_000;
    while (port === undefined) {
      if (Date.now() > deadline) throw new Error(`launcher did not listen within 60 s:\n${output}`);
      if (child.exitCode !== null) throw new Error(`launcher exited with ${child.exitCode} before listening:\n${output}`);
      port = logs().find((l) => l.msg === 'launcher API listening')?.port as number | undefined;
      if (port === undefined) await sleep(50);
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  const baseUrl = `http://127.0.0.1:${port}`;
  const client = new LauncherClient({ baseUrl, token });
  api.client = client;
  const remember = setInterval(() => {
    void client.status().then((s) => (lastQemuPid = s.qemu.pid ?? lastQemuPid), () => undefined);
  }, 1000);
  void exited.then(() => clearInterval(remember));
  return {
    dir,
    stateDir,
    disk,
    token,
    client,
    baseUrl,
    process: child,
    startedAt,
    exited,
    logs,
    serial,
    counters: async () => parseCounterLines(await serial()),
    waitForSerial: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(await serial());
        if (match !== null) return match;
        if (Date.now() > deadline) throw new Error(`serial console never matched ${String(pattern)}`);
        await sleep(200);
      }
    },
    dispose: async () => {
      clearInterval(remember);
      await dispose();
    },
  };
}

/** Polls the status until `predicate` holds; returns that status. */
export async function waitForStatus<T>(
  launcher: RunningLauncher,
  predicate: (status: Awaited<ReturnType<LauncherClient['status']>>) => T | undefined | false,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const status = await launcher.client.status().catch(() => undefined);
    last = status;
    const result = status === undefined ? undefined : predicate(status);
    if (result !== undefined && result !== false) return result;
    if (Date.now() > deadline) throw new Error(`status never matched within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

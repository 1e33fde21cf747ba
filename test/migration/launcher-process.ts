// Runs real launcher processes for the migration suites and benchmark: the same VM
// (name, uid, token, template, disk file on "shared storage") in two launcher pods —
// a source in `run` mode and a target in `migration-target` mode, optionally inside a
// peer network namespace. Each launcher owns a state dir; stop() kills the launcher
// (by pid) and the QEMU it started (by the pid its status reports), then removes it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LauncherConfigInput, Status } from '../../launcher/src/api/index.ts';
import { LauncherClient, MigrationClient } from '../../launcher/src/api/index.ts';
import assert from 'node:assert/strict';
import { counterContinuity, parseCounterLines, type CounterRecord, type TestGuest } from '../support/guest.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const launcherMain = path.join(repoRoot, 'launcher', 'src', 'main.ts');

export interface SharedVm {
  /** Directory holding the disk image (the "shared storage" both launchers mount). */
  readonly storageDir: string;
  readonly disk: string;
  readonly token: string;
  readonly uid: string;
  readonly guest: TestGuest;
  readonly memory: string;
  /** A `#!` script the guest runs once at boot (cloud-init user-data), e.g. a workload. */
  readonly userData?: string;
}

export interface LauncherOptions {
  readonly vm: SharedVm;
  readonly mode: 'run' | 'migration-target';
  /** Address the launcher API (and, for a target, the migration stream) binds. */
  readonly address: string;
  /** Command prefix that puts the launcher into another network namespace. */
  readonly exec?: readonly string[];
  readonly name: string;
}

export interface LauncherProcess {
  readonly name: string;
  readonly process: ChildProcess;
  readonly baseUrl: string;
  readonly api: LauncherClient;
  readonly migration: MigrationClient;
  readonly stateDir: string;
  readonly serialLog: string;
  /** Resolves with the launcher's exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Everything the launcher logged (pino JSON lines). */
  log(): string;
  counter(): Promise<CounterRecord[]>;
  stop(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The launcher configuration of the shared VM, as the operator would write it for one pod. */
export function launcherConfig(
  vm: SharedVm,
  pod: { mode: 'run' | 'migration-target'; address: string; tokenFile: string; stateDir: string },
): LauncherConfigInput {
  return {
    apiVersion: 'launcher.keyvirt.io/v1',
    vm: { name: 'migrating-vm', namespace: 'tests', uid: vm.uid },
    template: {
      memory: { size: vm.memory },
      disks: [{ name: 'root', persistentVolumeClaim: { claimName: 'root' } }],
      guestAgent: true,
      allowEmulation: true,
      ...(vm.userData === undefined ? {} : { cloudInit: { userData: vm.userData } }),
    },
    mode: pod.mode,
    disks: { root: { path: vm.disk, format: 'qcow2' } },
    listen: { address: pod.address, port: 0 },
    tokenFile: pod.tokenFile,
    stateDir: pod.stateDir,
    allowEmulation: true,
    directKernelBoot: { kernel: vm.guest.kernel, initrd: vm.guest.initrd, cmdline: vm.guest.cmdline },
    qemu: { vnc: false },
    guestAgent: { pollIntervalMs: 500, retryIntervalMs: 300 },
    terminationGracePeriodSeconds: 5,
  };
}

const listeningLine = /"msg":"launcher API listening"/;

/** Starts a launcher and waits until its API answers (not until the VM runs). */
export async function startLauncher(options: LauncherOptions): Promise<LauncherProcess> {
  const stateDir = await mkdtemp(path.join(tmpdir(), `kv-${options.name}-`));
  const tokenFile = path.join(stateDir, 'token');
  await writeFile(tokenFile, options.vm.token, { mode: 0o600 });
  const config = launcherConfig(options.vm, { mode: options.mode, address: options.address, tokenFile, stateDir: path.join(stateDir, 'state') });
  const configFile = path.join(stateDir, 'config.json');
  await writeFile(configFile, JSON.stringify(config));
  const argv = [...(options.exec ?? []), process.execPath, launcherMain, '--config', configFile];
  const [cmd = process.execPath, ...args] = argv;
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KEYVIRT_LOG_LEVEL: 'info' } });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      for (const line of output.split('\n')) {
        if (!listeningLine.test(line)) continue;
        const parsed = /"port":(\d+)/.exec(line);
        if (parsed !== null) resolve(Number(parsed[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => reject(new Error(`launcher ${options.name} exited (${code}) before listening:\n${output}`)));
  });
  const stop = async (): Promise<void> => {
    const qemuPid = await readFile(path.join(stateDir, 'qemu.pid'), 'utf8').then(Number, () => 0);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit').catch(() => undefined);
    }
    if (qemuPid > 0 && alive(qemuPid)) process.kill(qemuPid, 'SIGKILL');
    await rm(stateDir, { recursive: true, force: true });
  };
  let apiPort: number;
  try {
    apiPort = await Promise.race([port, sleep(60_000).then(() => Promise.reject(new Error(`launcher ${options.name} did not listen within 60 s`)))]);
  } catch (err) {
    await stop();
    throw err;
  }
  const host = options.address.includes(':') ? `[${options.address}]` : options.address;
  const baseUrl = `http://${host}:${apiPort}`;
  const api = new LauncherClient({ baseUrl, token: options.vm.token });
  // Remember QEMU's pid as soon as it is known, so stop() can reap it even if the launcher dies.
  void (async (): Promise<void> => {
    for (let i = 0; i < 600 && child.exitCode === null; i++) {
      const pid = await api.status().then((s) => s.qemu.pid, () => undefined);
      if (pid !== undefined) {
        await writeFile(path.join(stateDir, 'qemu.pid'), String(pid)).catch(() => undefined);
        return;
      }
      await sleep(100);
    }
  })();
  const serialLog = path.join(stateDir, 'state', 'serial.log');
  return {
    name: options.name,
    process: child,
    baseUrl,
    api,
    migration: new MigrationClient({ baseUrl, token: options.vm.token }),
    stateDir,
    serialLog,
    exited,
    log: () => output,
    counter: async () => parseCounterLines(await readFile(serialLog, 'utf8').catch(() => '')),
    stop,
  };
}

/** Polls the launcher status until `done` holds. */
export async function waitForStatus(launcher: LauncherProcess, done: (s: Status) => boolean, timeoutMs: number, what: string): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  let last: Status | undefined;
  while (Date.now() < deadline) {
    last = await launcher.api.status().catch(() => last);
    if (last !== undefined && done(last)) return last;
    await sleep(200);
  }
  throw new Error(`${launcher.name}: ${what} not reached within ${timeoutMs} ms; last status ${JSON.stringify(last)}`);
}

/** Polls the serial console until the counter has reached at least `n` records. */
export async function waitForCounter(launcher: LauncherProcess, n: number, timeoutMs: number): Promise<CounterRecord[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const records = await launcher.counter();
    if (records.length >= n) return records;
    await sleep(200);
  }
  throw new Error(`${launcher.name}: fewer than ${n} counter records within ${timeoutMs} ms`);
}

/**
 * Asserts the counter records come from one boot (`bootId`: no reset) and count up
 * without gaps, except that a line cut in half at a switch-over may be missing.
 */
export function assertCounterContinues(records: readonly CounterRecord[], bootId: string, where: string): void {
  const c = counterContinuity(records);
  assert.ok(records.length > 0, `${where}: no counter records`);
  assert.deepEqual(c.bootIds, [bootId], `${where}: boot ids ${c.bootIds.join(', ')}: the guest was reset`);
  for (const b of c.breaks) {
    assert.ok(b.next.n > b.after.n && b.next.n <= b.after.n + 2, `${where}: counter went ${b.after.n} → ${b.next.n}`);
  }
}

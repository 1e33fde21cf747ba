// Runs the real launcher (node launcher/src/main.ts) as a launcher pod would, for the
// launcher and migration suites and the benchmarks. A VM is a disk image on "shared
// storage", a token and a uid; it boots from the test guest's disk (read-only). Every
// launcher of one VM (a source in `run` mode, a target in `migration-target` mode,
// optionally inside a peer network namespace) mounts the same disks. Each launcher owns a temp dir (configuration, token file, state dir);
// dispose() kills what is still running by pid (the launcher and the QEMU it started)
// and removes that dir — and the VM's storage when the launcher created it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  IncomingMigrationStatus,
  LauncherConfigInput,
  MigrationEvent,
  MigrationPolicyInput,
  MigrationResult,
  MigrationTlsClientCredentialsInput,
  MigrationTlsServerCredentials,
  Status,
} from '@keyvirt/launcher/api';
import { LauncherClient, MigrationClient } from '@keyvirt/launcher/api';
import { mintMigrationCredentials } from '../../operator/src/migration/tls-credentials.ts';
import { startHostingPod, type HostingPod } from './hosting-pod.ts';
import { counterContinuity, createBlankDisk, parseCounterLines, testGuest, type CounterRecord, type TestGuest } from './guest.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const launcherMain = path.join(repoRoot, 'launcher', 'src', 'main.ts');
/** The uid of a VM created without one (the lifecycle suite checks it in the guest's seed). */
export const DEFAULT_VM_UID = '2b9c7f5e-3d1a-4c8e-9f00-6a1b2c3d4e5f';

export interface SharedVm {
  /** Directory holding the disk image (the "shared storage" every launcher of the VM mounts). */
  readonly storageDir: string;
  readonly disk: string;
  readonly diskFormat: 'raw' | 'qcow2';
  readonly token: string;
  readonly uid: string;
  readonly guest: TestGuest;
  readonly memory: string;
  /** A `#!` script the guest runs once at boot (cloud-init user-data), e.g. a workload. */
  readonly userData?: string;
}

export interface SharedVmOptions {
  readonly memory?: string;
  readonly userData?: string;
  readonly diskFormat?: 'raw' | 'qcow2';
  readonly uid?: string;
}

/** A fresh VM: a 64 MiB blank disk in a new storage dir, a random token. Remove it with removeSharedVm. */
export async function createSharedVm(options: SharedVmOptions = {}): Promise<SharedVm> {
  const storageDir = await mkdtemp(path.join(tmpdir(), 'kv-vm-storage-'));
  const diskFormat = options.diskFormat ?? 'qcow2';
  try {
    return {
      storageDir,
      disk: await createBlankDisk(storageDir, { format: diskFormat, sizeMiB: 64 }),
      diskFormat,
      token: randomBytes(24).toString('hex'),
      uid: options.uid ?? randomUUID(),
      guest: await testGuest(),
      memory: options.memory ?? '256Mi',
      ...(options.userData === undefined ? {} : { userData: options.userData }),
    };
  } catch (err) {
    await rm(storageDir, { recursive: true, force: true });
    throw err;
  }
}

export async function removeSharedVm(vm: SharedVm): Promise<void> {
  await rm(vm.storageDir, { recursive: true, force: true });
}

export interface LauncherPod {
  readonly mode: 'run' | 'migration-target';
  readonly address: string;
  readonly tokenFile: string;
  readonly stateDir: string;
}

/**
 * The launcher configuration of the VM, as the operator would write it for one pod. The guest
 * boots from its disk through the firmware (ADR 0087): the test guest's bootable qcow2 is the
 * read-only `boot` disk, first in the boot order (as `testVm()` attaches the `guest-boot` claim
 * through the operator); the counter writes to `root`, the first writable blank disk.
 */
export function launcherConfig(vm: SharedVm, pod: LauncherPod): LauncherConfigInput {
  return {
    apiVersion: 'launcher.keyvirt.io/v1',
    vm: { name: 'guest-1', namespace: 'kv-test', uid: vm.uid },
    template: {
      cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
      memory: { size: vm.memory },
      disks: [
        { name: 'boot', bootOrder: 1, readOnly: true, persistentVolumeClaim: { claimName: 'guest-boot' } },
        { name: 'root', persistentVolumeClaim: { claimName: 'guest-1-root' } },
      ],
      interfaces: [{ name: 'default', binding: 'masquerade', macAddress: '52:54:00:4b:56:01' }],
      guestAgent: true,
      allowEmulation: true,
      ...(vm.userData === undefined ? {} : { cloudInit: { userData: vm.userData } }),
    },
    mode: pod.mode,
    terminationGracePeriodSeconds: 60,
    disks: { boot: { path: vm.guest.disk, format: 'qcow2' }, root: { path: vm.disk, format: vm.diskFormat } },
    listen: { address: pod.address, port: 0 },
    tokenFile: pod.tokenFile,
    stateDir: pod.stateDir,
    allowEmulation: true,
    qemu: { vnc: false },
    guestAgent: { pollIntervalMs: 500, retryIntervalMs: 300 },
  };
}

export interface LauncherOptions {
  /** The VM to run; when absent a fresh raw-disk VM is created for this launcher alone. */
  readonly vm?: SharedVm;
  readonly mode?: 'run' | 'migration-target';
  /** Address the launcher API (and, for a target, the migration stream) binds; 127.0.0.1 by default. */
  readonly address?: string;
  /** Command prefix that runs the launcher in another network namespace (`ip netns exec <ns>`). */
  readonly netnsExec?: readonly string[];
  /** Names the temp dir and error messages. */
  readonly name?: string;
  /** Changes to the configuration written for the launcher. */
  readonly configure?: (config: LauncherConfigInput) => LauncherConfigInput;
  /** Extra launcher environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** The launcher command (Node, its flags, the entry point); the sources on this Node by default. */
  readonly command?: readonly string[];
  /** Runs the launcher in its own process group (its QEMU included), so that a test can signal the whole group. */
  readonly detached?: boolean;
  /**
   * QEMU held by a pod's PID 1 while the launcher runs beside it (`qemu.host: pod`, ADR
   * 0131): `namespace` starts launcher/pod/vm-pod.sh in a PID namespace of its own, as a
   * launcher pod would run it; `external` leaves the pod to `beforeLaunch` (a container).
   */
  readonly hostingPod?: 'namespace' | 'external';
  /** Runs once the launcher's state directory is known, before the launcher starts. */
  readonly beforeLaunch?: (dirs: { dir: string; stateDir: string }) => Promise<void>;
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface LauncherExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LauncherProcess {
  readonly name: string;
  readonly vm: SharedVm;
  /** The launcher's own temp dir (configuration, token file, state dir). */
  readonly dir: string;
  readonly stateDir: string;
  readonly serialLog: string;
  readonly client: LauncherClient;
  readonly migration: MigrationClient;
  readonly baseUrl: string;
  readonly process: ChildProcess;
  /** Date.now() just before the launcher process was spawned. */
  readonly startedAt: number;
  readonly exited: Promise<LauncherExit>;
  /** Everything the launcher wrote (pino JSON lines and anything else). */
  readonly output: () => string;
  readonly logs: () => LogLine[];
  readonly serial: () => Promise<string>;
  readonly counters: () => Promise<CounterRecord[]>;
  readonly waitForSerial: (pattern: RegExp, timeoutMs: number) => Promise<RegExpExecArray>;
  readonly dispose: () => Promise<void>;
  /** The pod holding QEMU, with `hostingPod: 'namespace'`. */
  readonly pod?: HostingPod;
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

/** Whether a process with this pid exists (signal 0). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const LISTEN_TIMEOUT_MS = 60_000;

/** Starts a launcher and waits until its API listens (not until the VM runs). */
export async function startLauncher(options: LauncherOptions = {}): Promise<LauncherProcess> {
  const name = options.name ?? 'launcher';
  const ownVm = options.vm === undefined ? await createSharedVm({ diskFormat: 'raw', uid: DEFAULT_VM_UID }) : undefined;
  const vm = options.vm ?? ownVm;
  assert.ok(vm !== undefined);
  const dir = await mkdtemp(path.join(tmpdir(), `kv-${name}-`));
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, `${vm.token}\n`, { mode: 0o600 });
  const stateDir = path.join(dir, 'state');
  const address = options.address ?? '127.0.0.1';
  const own = launcherConfig(vm, { mode: options.mode ?? 'run', address, tokenFile, stateDir });
  const base = options.hostingPod === undefined ? own : { ...own, qemu: { ...own.qemu, host: 'pod' as const } };
  const config = options.configure === undefined ? base : options.configure(base);
  const configFile = path.join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const pod =
    options.hostingPod === 'namespace' ? await startHostingPod(stateDir, { KEYVIRT_GRACE_SECONDS: String(config.terminationGracePeriodSeconds ?? 180) }) : undefined;
  await options.beforeLaunch?.({ dir, stateDir });
  const [cmd, ...args] = [...(options.netnsExec ?? []), ...(options.command ?? [process.execPath, launcherMain]), '--config', configFile];
  const startedAt = Date.now();
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KEYVIRT_LOG_LEVEL: 'info', ...options.env },
    detached: options.detached === true,
  });
  let output = '';
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const port = new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const line = parseLog(output).find((l) => l.msg === 'launcher API listening');
      if (typeof line?.port === 'number') resolve(line.port);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((exit) => reject(new Error(`launcher ${name} exited with ${String(exit.code ?? exit.signal)} before listening:\n${output}`)));
  });
  const logs = (): LogLine[] => parseLog(output);
  let lastQemuPid: number | undefined;
  const qemuPids = (): number[] => [lastQemuPid, ...logs().map((l) => l.qemuPid)].filter((p): p is number => typeof p === 'number');
  const timers: { remember?: NodeJS.Timeout } = {};
  const dispose = async (): Promise<void> => {
    clearInterval(timers.remember);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (pod !== undefined) {
      // QEMU's pid is the pod's (another PID namespace): the namespace ends with its PID 1.
      if (pod.process.exitCode === null && pod.process.signalCode === null) pod.process.kill('SIGKILL');
      await pod.exited;
    } else if (options.hostingPod === undefined) {
      for (const pid of qemuPids()) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
    if (ownVm !== undefined) await removeSharedVm(ownVm);
  };
  let apiPort: number;
  const listenTimeout = new AbortController();
  try {
    apiPort = await Promise.race([
      port,
      sleep(LISTEN_TIMEOUT_MS, undefined, { signal: listenTimeout.signal }).then(() => Promise.reject(new Error(`launcher ${name} did not listen within 60 s:\n${output}`))),
    ]);
  } catch (err) {
    await dispose();
    throw err;
  } finally {
    listenTimeout.abort();
  }
  const host = address.includes(':') ? `[${address}]` : address;
  const baseUrl = `http://${host}:${apiPort}`;
  const client = new LauncherClient({ baseUrl, token: vm.token });
  // QEMU's pid also comes from the status, in case the launcher's log is cut short.
  timers.remember = setInterval(() => {
    void client.status().then((s) => (lastQemuPid = s.qemu.pid ?? lastQemuPid), () => undefined);
  }, 1000);
  void exited.then(() => clearInterval(timers.remember));
  const serialLog = path.join(stateDir, 'serial.log');
  const serial = (): Promise<string> => readFile(serialLog, 'utf8').catch(() => '');
  return {
    name,
    vm,
    dir,
    stateDir,
    serialLog,
    client,
    migration: new MigrationClient({ baseUrl, token: vm.token }),
    baseUrl,
    process: child,
    startedAt,
    exited,
    output: () => output,
    logs,
    serial,
    counters: async () => parseCounterLines(await serial()),
    ...(pod === undefined ? {} : { pod }),
    waitForSerial: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(await serial());
        if (match !== null) return match;
        if (Date.now() > deadline) throw new Error(`${name}: serial console never matched ${String(pattern)}`);
        await sleep(200);
      }
    },
    dispose,
  };
}

/** What waitForStatus resolves with: the status for a boolean predicate, else the predicate's value. */
export type StatusWait<T> = [T] extends [boolean] ? Status : Exclude<T, false | undefined>;

/** Polls the status until `predicate` returns something other than undefined/false. */
export async function waitForStatus<T>(
  launcher: LauncherProcess,
  predicate: (status: Status) => T,
  timeoutMs: number,
  what = 'the expected status',
): Promise<StatusWait<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: Status | undefined;
  for (;;) {
    last = await launcher.client.status().catch(() => last);
    const result = last === undefined ? undefined : predicate(last);
    if (last !== undefined && result === true) return last as StatusWait<T>;
    if (result !== undefined && result !== false) return result as StatusWait<T>;
    if (Date.now() > deadline) throw new Error(`${launcher.name}: ${what} not reached within ${timeoutMs} ms; last status ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

/** Polls the serial console until the counter has reached at least `n` records. */
export async function waitForCounter(launcher: LauncherProcess, n: number, timeoutMs: number): Promise<CounterRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = await launcher.counters();
    if (records.length >= n) return records;
    if (Date.now() > deadline) throw new Error(`${launcher.name}: fewer than ${n} counter records within ${timeoutMs} ms`);
    await sleep(200);
  }
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

/** The TLS credentials each side of a migration gets; either may be replaced to stage an impostor. */
export interface MigrationTlsPair {
  readonly target: MigrationTlsServerCredentials;
  readonly source: MigrationTlsClientCredentialsInput;
}

/** Mints the migration's credentials as the operator does, for a target listening on `targetHost`. */
export async function mintMigrationTls(targetHost: string, migrationUid: string = randomUUID()): Promise<MigrationTlsPair> {
  const creds = await mintMigrationCredentials({ vmNamespace: 'kv-test', vmName: 'guest-1', migrationUid, targetHost });
  return {
    target: { caCert: creds.caCert, ...creds.server },
    source: { caCert: creds.caCert, ...creds.client, hostname: creds.tlsHostname },
  };
}

/** The host a launcher listens on (its API URL's host, brackets removed). */
export function launcherHost(launcher: LauncherProcess): string {
  return new URL(launcher.baseUrl).hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Starts migrating the VM from `source` to `target` (a launcher in migration-target
 * mode): waits until the target's QEMU waits, prepares its incoming side with the
 * policy's post-copy choice, and starts the source. Both sides get TLS credentials
 * minted for this migration unless `tls` is given. Returns the target's listener.
 */
export async function startMigration(
  source: LauncherProcess,
  target: LauncherProcess,
  policy: MigrationPolicyInput = {},
  migrationId?: string,
  tls?: MigrationTlsPair,
): Promise<IncomingMigrationStatus> {
  await waitForStatus(target, (s) => s.phase === 'WaitingForMigration', 60_000, 'WaitingForMigration');
  const credentials = tls ?? (await mintMigrationTls(launcherHost(target), migrationId));
  const incoming = await target.migration.prepareIncoming({ postCopy: policy.postCopy ?? false, tls: credentials.target });
  await source.migration.start({
    ...(migrationId === undefined ? {} : { migrationId }),
    target: { host: incoming.host, port: incoming.port, launcherUrl: target.baseUrl },
    policy,
    tls: credentials.source,
  });
  return incoming;
}

/** Follows a source launcher's migration event stream to the result; returns it with every event seen. */
export async function migrationOutcome(source: LauncherProcess, timeoutMs: number): Promise<{ result: MigrationResult; events: MigrationEvent[] }> {
  const events: MigrationEvent[] = [];
  for await (const event of source.migration.events(AbortSignal.timeout(timeoutMs))) {
    events.push(event);
    if (event.type === 'result') return { result: event.result, events };
  }
  const current = await source.migration.current();
  assert.ok(current.result !== null, `${source.name}: the migration event stream ended without a result`);
  return { result: current.result, events };
}

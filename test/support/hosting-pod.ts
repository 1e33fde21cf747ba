// Pods that hold QEMU under launcher/pod/vm-pod.sh (ADR 0131) for the launcher suites and
// benchmarks, made of namespaces on this machine; and the process-tree probes they use.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { until } from './waits.ts';

export const VM_POD_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'launcher', 'pod', 'vm-pod.sh');

/** A pod whose PID 1 (the script) runs in a PID namespace of its own. */
export interface HostingPod {
  /** `unshare`, whose child is the pod's PID 1; SIGKILL to it ends the namespace. */
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The host pid of the pod's PID 1 (the script). */
  readonly initPid: () => Promise<number>;
  readonly output: () => string;
}

async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${String(pid)}/task/${String(pid)}/children`, 'utf8').catch(() => '');
  return text
    .trim()
    .split(' ')
    .filter((p) => p !== '')
    .map(Number);
}

/** Host pids of a process's descendants, depth first. */
export async function processTree(pid: number): Promise<number[]> {
  const all: number[] = [];
  for (const child of await childrenOf(pid)) all.push(child, ...(await processTree(child)));
  return all;
}

/** The first word of a process's command line ('' once it is gone). */
export async function commandOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${String(pid)}/cmdline`, 'utf8').catch(() => '')).split('\0')[0] ?? '';
}

/**
 * The child of `parent` that runs `command` (its program, or the script its interpreter
 * runs: `bash vm-pod.sh`), once it does; a shell whose script merely names it is not it.
 */
export async function childRunning(parent: number, command: string, timeoutMs = 10_000): Promise<number> {
  return until(`a child of ${String(parent)} running ${command}`, timeoutMs, async () => {
    for (const pid of await childrenOf(parent)) {
      const argv = (await readFile(`/proc/${String(pid)}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (argv.slice(0, 2).some((a) => path.basename(a) === command)) return pid;
    }
    return undefined;
  });
}

/** Starts vm-pod.sh as PID 1 of a new PID namespace, on `stateDir`. */
export async function startHostingPod(stateDir: string, env: NodeJS.ProcessEnv = {}): Promise<HostingPod> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const child = spawn('unshare', ['--pid', '--fork', '--kill-child', 'bash', VM_POD_SCRIPT], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, KEYVIRT_STATE_DIR: stateDir, ...env },
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const initPid = (): Promise<number> => childRunning(child.pid ?? -1, 'vm-pod.sh', 5000);
  return { process: child, exited, initPid, output: () => output };
}

// Runs one container as real processes: a private PID, mount and UTS namespace
// (the pod's network namespace entered unless hostNetwork), cgroup limits, a root
// filesystem of its own with the volumes bind-mounted at their mount paths
// (container-root.ts), and the container's argv exec'd as PID 1 under setpriv with
// the capabilities, no_new_privs and user of its securityContext.
// setpriv's parent-death signal plus unshare's --kill-child make the whole
// container die with the simulator that started it (a crashed node loses its pods).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pivotScript, READ_ONLY_BIND_FUNCTION, rootAssemblyScript, setprivArgs, shellQuote } from './container-root.ts';
import type { ContainerRoot, ContainerSecurity } from './container-root.ts';

export interface BindMount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

/** A host device node given to the container; without `w` in permissions it is bound read-only. */
export interface DeviceNode {
  readonly hostPath: string;
  readonly containerPath: string;
  readonly permissions: string;
}

export interface ContainerLaunch {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly workingDir: string;
  readonly hostname: string;
  /** The pod's network namespace name, or undefined for hostNetwork pods. */
  readonly netns: string | undefined;
  /** Targets are paths inside the container. */
  readonly mounts: readonly BindMount[];
  /** Device nodes from the device plugins (container-root.ts: the container's /dev has no others). */
  readonly devices?: readonly DeviceNode[] | undefined;
  readonly root: ContainerRoot;
  readonly security: ContainerSecurity;
  readonly cgroupProcFiles: readonly string[];
  readonly scriptPath: string;
  readonly logPath: string;
}

export interface ContainerExit {
  readonly exitCode: number;
  readonly signal: string | undefined;
}

/** The init script PID 1 runs before exec'ing the container's argv. */
export function initScript(launch: Pick<ContainerLaunch, 'cgroupProcFiles' | 'devices' | 'hostname' | 'mounts' | 'root' | 'security' | 'workingDir'>): string {
  // Host tools by absolute path: the container's PATH may put other tools (busybox) first.
  // The script is its PID namespace's init, which the kernel spares every signal it has no
  // handler for: without the trap a pod deleted while its container is being set up would
  // miss its SIGTERM and start the container anyway.
  const lines = ["trap 'exit 143' TERM", "trap 'exit 130' INT", 'set -e', ...READ_ONLY_BIND_FUNCTION];
  for (const file of launch.cgroupProcFiles) lines.push(`echo $$ > ${shellQuote(file)}`);
  lines.push(`/usr/bin/hostname ${shellQuote(launch.hostname)}`);
  lines.push(...rootAssemblyScript(launch.root, launch.security.privileged));
  for (const m of launch.mounts) {
    const target = shellQuote(path.posix.join(launch.root.dir, m.target));
    lines.push(`if [ -d ${shellQuote(m.source)} ]; then /usr/bin/mkdir -p ${target}; else /usr/bin/mkdir -p "$(/usr/bin/dirname ${target})"; [ -e ${target} ] || : > ${target}; fi`);
    lines.push(`/usr/bin/mount --bind ${shellQuote(m.source)} ${target}`);
    if (m.readOnly) lines.push(`/usr/bin/mount -o remount,bind,ro ${target}`);
  }
  // Device nodes go over the container's own /dev (a tmpfs without nodev), each bound from the host.
  for (const d of launch.devices ?? []) {
    const target = shellQuote(path.posix.join(launch.root.dir, d.containerPath));
    lines.push(`[ -c ${shellQuote(d.hostPath)} ] || { echo ${shellQuote(`keyvirt-nodesim: device ${d.hostPath} is not a character device`)} >&2; exit 126; }`);
    lines.push(`/usr/bin/mkdir -p "$(/usr/bin/dirname ${target})"; [ -e ${target} ] || : > ${target}`);
    lines.push(`/usr/bin/mount --bind ${shellQuote(d.hostPath)} ${target}`);
    if (!d.permissions.includes('w')) lines.push(`/usr/bin/mount -o remount,bind,ro ${target}`);
  }
  lines.push(`/usr/bin/mkdir -p ${shellQuote(path.posix.join(launch.root.dir, launch.workingDir))} 2>/dev/null || true`);
  lines.push(...pivotScript(launch.root, launch.security.readOnlyRoot));
  lines.push(`cd ${shellQuote(launch.workingDir)}`);
  const priv = setprivArgs(launch.security);
  lines.push(priv.length === 0 ? 'exec "$@"' : `exec /usr/bin/setpriv ${priv.map(shellQuote).join(' ')} -- "$@"`);
  return `${lines.join('\n')}\n`;
}

function parentPid(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Children of `pid` (this kernel has no /proc/<pid>/task/<tid>/children). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const candidate = Number(entry);
    if (Number.isInteger(candidate) && parentPid(candidate) === pid) out.push(candidate);
  }
  return out;
}

export class ContainerProcess {
  readonly #child: ChildProcess;
  readonly exited: Promise<ContainerExit>;
  readonly startedAt: Date;

  constructor(launch: ContainerLaunch) {
    fs.mkdirSync(path.dirname(launch.scriptPath), { recursive: true });
    fs.writeFileSync(launch.scriptPath, initScript(launch));
    const log = fs.openSync(launch.logPath, 'a');
    const enterNet = launch.netns === undefined ? [] : ['/usr/bin/nsenter', `--net=/run/netns/${launch.netns}`, '--'];
    // A hostPath volume of the node's /proc (the node agent's) must be the node's procfs, as
    // under a kubelet: the script then runs on the node's /proc, and the container still gets
    // its own at <root>/proc (rootAssemblyScript mounts it from inside the new PID namespace).
    const mountProc = launch.mounts.some((m) => m.source === '/proc' || m.source.startsWith('/proc/')) ? [] : ['--mount-proc'];
    try {
      this.#child = spawn('/usr/bin/setpriv', [
        '--pdeathsig', 'KILL', '--',
        '/usr/bin/unshare', '--pid', '--fork', '--kill-child=SIGKILL', '--mount', '--uts',
        '--propagation', 'private', ...mountProc, '--',
        ...enterNet, '/bin/sh', launch.scriptPath, ...launch.argv,
      ], { env: { ...launch.env }, stdio: ['ignore', log, log], cwd: '/' });
    } finally {
      fs.closeSync(log);
    }
    this.startedAt = new Date();
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        const signo = signal === null ? 0 : os.constants.signals[signal];
        resolve({ exitCode: code ?? 128 + signo, signal: signal ?? undefined });
      });
      this.#child.once('error', () => resolve({ exitCode: 127, signal: undefined }));
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The container's PID 1 as seen from the host (the unshare wrapper's child). */
  containerPid(): number | undefined {
    const wrapper = this.#child.pid;
    return wrapper === undefined ? undefined : childPids(wrapper)[0];
  }

  /** Sends `signal` to the container's PID 1 (not to the unshare wrapper). */
  signal(signal: NodeJS.Signals): void {
    const wrapper = this.#child.pid;
    if (wrapper === undefined) return;
    if (signal === 'SIGKILL') {
      for (const pid of childPids(wrapper)) tryKill(pid, signal);
      tryKill(wrapper, signal);
      return;
    }
    for (const pid of childPids(wrapper)) tryKill(pid, signal);
  }
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

// CPU time of the processes a benchmark's burst keeps busy, from procfs: the local
// cluster's control plane (found by the binary it runs), kwok, the operator, and the
// benchmark's own process — a benchmark that watches thousands of objects may be
// measuring itself.
import { readdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** User + system CPU time of a process in ms; undefined once it is gone. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

/** The pids whose first argument is one of `binaries` under `binDir` (the local cluster's own processes). */
export async function processesOf(binDir: string, binaries: readonly string[]): Promise<Map<string, number[]>> {
  const found = new Map<string, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const exe = cmdline.split('\0')[0] ?? '';
    if (path.dirname(exe) !== binDir) continue;
    const name = path.basename(exe);
    if (!binaries.includes(name)) continue;
    found.set(name, [...(found.get(name) ?? []), Number(entry)]);
  }
  return found;
}

/** What to measure: named groups of pids, and `self` for this process. */
export type CpuSubjects = ReadonlyMap<string, readonly number[] | 'self'>;

async function cpuOf(subject: readonly number[] | 'self'): Promise<number> {
  if (subject === 'self') {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
  let total = 0;
  for (const pid of subject) total += (await processCpuMs(pid)) ?? 0;
  return total;
}

/** Each subject's CPU over a window: `name=pct` of one core, joined by commas (`text`), and milliseconds by name. */
export interface CpuWindow {
  readonly text: string;
  readonly ms: ReadonlyMap<string, number>;
  /** The whole machine over the window, every process and the kernel's work included (/proc/stat). */
  readonly machine: MachineCpu;
}

/** CPU time of the whole machine, summed over its cores, in ms. */
export interface MachineCpu {
  /** Time the cores ran anything (user, nice, system, interrupts, steal). */
  readonly busyMs: number;
  /** Time the cores were idle (idle, iowait). */
  readonly idleMs: number;
}

/** The machine's CPU time since boot, from the first line of /proc/stat. */
export async function machineCpu(): Promise<MachineCpu> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0] ?? '';
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const ms = (ticks: number): number => (ticks * 1000) / TICKS_PER_SECOND;
  return { busyMs: ms(user + nice + system + irq + softirq + steal), idleMs: ms(idle + iowait) };
}

/** Starts measuring; the returned function gives each subject's CPU since then, in the subjects' order. */
export async function cpuSince(subjects: CpuSubjects): Promise<() => Promise<CpuWindow>> {
  const start = performance.now();
  const machineBefore = await machineCpu();
  const before = new Map<string, number>();
  for (const [name, subject] of subjects) before.set(name, await cpuOf(subject));
  return async () => {
    const wall = performance.now() - start;
    const parts: string[] = [];
    const ms = new Map<string, number>();
    for (const [name, subject] of subjects) {
      const used = (await cpuOf(subject)) - (before.get(name) ?? 0);
      ms.set(name, used);
      parts.push(`${name}=${((used / wall) * 100).toFixed(0)}`);
    }
    const now = await machineCpu();
    return { text: parts.join(','), ms, machine: { busyMs: now.busyMs - machineBefore.busyMs, idleMs: now.idleMs - machineBefore.idleMs } };
  };
}

/** RSS, its high-water mark and CPU time of a process, from procfs. */
export async function procStats(pid: number): Promise<{ rssMiB: number; peakMiB: number; cpuMs: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024, cpuMs: (ticks * 1000) / 100 };
}

/** The kube-apiserver serving `port` (its CPU is the pace of a burst), if this machine runs it. */
export async function apiServerPid(port: number): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    if ((args[0] ?? '').endsWith('kube-apiserver') && args.includes(`--secure-port=${port}`)) return Number(entry);
  }
  return undefined;
}

/** From now until the returned function is called: the operator's and the API server's CPU (% of one core) and the load average. */
export async function cpuShares(operatorPid: number, apiPid: number | undefined): Promise<() => Promise<{ operatorPct: string; apiServerPct: string; load: string }>> {
  const start = Date.now();
  const op = (await procStats(operatorPid)).cpuMs;
  const api = apiPid === undefined ? undefined : (await procStats(apiPid)).cpuMs;
  const loadBefore = loadavg()[0] ?? 0;
  return async () => {
    const ms = Date.now() - start;
    const pct = (now: number, then: number): string => (((now - then) / ms) * 100).toFixed(0);
    const apiServerPct = apiPid === undefined || api === undefined ? 'n/a' : pct((await procStats(apiPid)).cpuMs, api);
    return { operatorPct: pct((await procStats(operatorPid)).cpuMs, op), apiServerPct, load: `${loadBefore.toFixed(1)}-${(loadavg()[0] ?? 0).toFixed(1)}` };
  };
}

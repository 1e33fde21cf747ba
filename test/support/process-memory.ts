// What a process holds, read from procfs, for benchmarks that state memory figures:
// resident set (what `ps` shows), its private part (anonymous pages: heap, stacks,
// malloc arenas; what each further launcher on a node adds) and its file-backed part
// (the Node binary's and libraries' pages, shared by every process that maps them),
// the proportional set size (shared pages divided among the processes sharing them),
// and CPU time so far.
import { readFile } from 'node:fs/promises';

export interface ProcessMemory {
  readonly rssMiB: number;
  readonly anonMiB: number;
  readonly fileMiB: number;
  readonly pssMiB: number;
  readonly threads: number;
  /** User + system CPU time of the process so far. */
  readonly cpuMs: number;
}

export class ProcessGoneError extends Error {
  override readonly name = 'ProcessGoneError';
}

function field(text: string, name: string, file: string): number {
  const value = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1];
  if (value === undefined) throw new ProcessGoneError(`${file} has no ${name}`);
  return Number(value);
}

/** Reads /proc/<pid>/{status,smaps_rollup,stat}; rejects with ProcessGoneError when the process is gone. */
export async function processMemory(pid: number): Promise<ProcessMemory> {
  let status: string;
  let rollup: string;
  let stat: string;
  try {
    [status, rollup, stat] = await Promise.all([
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/smaps_rollup`, 'utf8'),
      readFile(`/proc/${pid}/stat`, 'utf8'),
    ]);
  } catch (err) {
    throw new ProcessGoneError(`process ${pid} cannot be read`, { cause: err });
  }
  // stat: "pid (comm) state ppid …": utime and stime are fields 14 and 15, counted after the comm.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const kib = (n: number): number => n / 1024;
  return {
    rssMiB: kib(field(status, 'VmRSS', 'status')),
    anonMiB: kib(field(status, 'RssAnon', 'status')),
    fileMiB: kib(field(status, 'RssFile', 'status') + field(status, 'RssShmem', 'status')),
    pssMiB: kib(field(rollup, 'Pss', 'smaps_rollup')),
    threads: field(status, 'Threads', 'status'),
    // USER_HZ is 100 on Linux.
    cpuMs: ticks * 10,
  };
}

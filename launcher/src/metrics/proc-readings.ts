// What /proc says about QEMU and the launcher: CPU time of each vCPU thread, resident
// memory, and how much of QEMU's resident memory is guest RAM. The root is injectable
// (tests read fixture trees); every file read is bounded.
import { open } from 'node:fs/promises';
import { join } from 'node:path';

/** Linux's USER_HZ, the unit of utime/stime in /proc/<pid>/stat. */
const CLOCK_TICKS_PER_SECOND = 100;
/** No /proc file read here is larger on a real system; smaps of a QEMU is ~100 KiB. */
const MAX_PROC_FILE_BYTES = 4 * 1024 * 1024;

export class ProcReadError extends Error {
  override readonly name = 'ProcReadError';
}

async function readBounded(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(MAX_PROC_FILE_BYTES);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, size, buf.length - size, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      if (size >= buf.length) throw new ProcReadError(`${path} is larger than ${MAX_PROC_FILE_BYTES} bytes`);
    }
    return buf.subarray(0, size).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Seconds a thread has run on a host CPU: schedstat's first field (ns), else stat's utime+stime. */
export async function threadCpuSeconds(procRoot: string, pid: number, tid: number): Promise<number> {
  const dir = join(procRoot, String(pid), 'task', String(tid));
  try {
    const ns = Number((await readBounded(join(dir, 'schedstat'))).trim().split(/\s+/)[0]);
    if (Number.isFinite(ns) && ns >= 0) return ns / 1e9;
  } catch {
    // schedstat needs CONFIG_SCHED_INFO; stat is always there.
  }
  return statCpuSeconds(await readBounded(join(dir, 'stat')));
}

/** utime + stime of a /proc/<pid>/stat line (fields 14 and 15, after the parenthesised name). */
export function statCpuSeconds(stat: string): number {
  const close = stat.lastIndexOf(')');
  if (close < 0) throw new ProcReadError('unexpected /proc stat line');
  const fields = stat.slice(close + 2).trim().split(/\s+/);
  // fields[0] is the state (field 3); utime is field 14 and stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new ProcReadError('unexpected /proc stat line');
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** VmRSS of /proc/<pid>/status, in bytes. */
export async function residentBytes(procRoot: string, pid: number | 'self'): Promise<number> {
  return statusRssBytes(await readBounded(join(procRoot, String(pid), 'status')));
}

export function statusRssBytes(status: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match === null) throw new ProcReadError('no VmRSS in /proc status');
  return Number(match[1]) * 1024;
}

/**
 * Resident bytes of QEMU's guest RAM: the Rss of the largest mapping at least
 * `guestBytes` long in /proc/<pid>/smaps (QEMU maps the guest RAM as one block).
 * Undefined when no mapping is that large (hugepages elsewhere, a layout not seen here).
 */
export async function guestRamResidentBytes(procRoot: string, pid: number, guestBytes: number): Promise<number | undefined> {
  return smapsGuestRamRss(await readBounded(join(procRoot, String(pid), 'smaps')), guestBytes);
}

export function smapsGuestRamRss(smaps: string, guestBytes: number): number | undefined {
  let best: { size: number; rss: number } | undefined;
  let current: { size: number; rss: number } | undefined;
  for (const line of smaps.split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+)\s/.exec(line);
    if (range !== null) {
      const size = Number.parseInt(range[2] ?? '0', 16) - Number.parseInt(range[1] ?? '0', 16);
      current = size >= guestBytes ? { size, rss: 0 } : undefined;
      if (current !== undefined && (best === undefined || size > best.size)) best = current;
      continue;
    }
    const rss = /^Rss:\s+(\d+)\s+kB$/.exec(line);
    if (rss !== null && current !== undefined) current.rss = Number(rss[1]) * 1024;
  }
  return best?.rss;
}

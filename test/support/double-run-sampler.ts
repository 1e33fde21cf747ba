// What the double-run checker reads each time it looks (all nodes run on this host):
// the QEMU processes of one VM, found in /proc by the `-name guest=<namespace>_<vm>`
// the launcher gives QEMU, with their node (freezer group keyvirt/<node>), whether that
// group is frozen and whether the process is already dying; and the highest counter
// per boot id among the test guest's records on the VM's disk, read afresh by path
// every time (a disk replaced by rename is followed; the old inode is not).
import fs from 'node:fs';
import path from 'node:path';
import type { DiskSample, QemuSample } from './double-run-judge.ts';

const cgroupFreezer = '/sys/fs/cgroup/freezer';
/** The test guest's record ring: the first 4 MiB of its disk, one 512-byte sector per record. */
export const RECORD_RING_BYTES = 8192 * 512;
const recordPattern = /^KV boot=([0-9a-f]{8,32}) n=(\d+) t=\d+$/;

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
}

/** True when argv names the guest `<namespace>_<vm>` (`-name guest=<ns>_<vm>[,…]`). */
export function namesGuest(argv: readonly string[], guestName: string): boolean {
  const at = argv.indexOf('-name');
  const value = at < 0 ? undefined : argv[at + 1];
  return value !== undefined && (value === `guest=${guestName}` || value.startsWith(`guest=${guestName},`));
}

/** The freezer group path (relative to the hierarchy) in a /proc/<pid>/cgroup text. */
export function freezerPath(cgroupText: string): string | undefined {
  for (const line of cgroupText.split('\n')) {
    const [, controllers, p] = line.split(':');
    if (controllers !== undefined && controllers.split(',').includes('freezer') && p !== undefined) return p;
  }
  return undefined;
}

/** The simulated node of a freezer path `/keyvirt/<node>/…`. */
export function nodeOfFreezerPath(p: string): string | undefined {
  const m = /^\/keyvirt\/([^/]+)/.exec(p);
  return m?.[1];
}

/** True when a /proc/<pid>/status text shows a zombie or a pending SIGKILL. */
export function dyingFromStatus(status: string): boolean {
  const state = /^State:\s+(\S)/m.exec(status)?.[1];
  if (state === 'Z' || state === 'X') return true;
  const sigkill = 1n << 8n;
  for (const field of ['SigPnd', 'ShdPnd']) {
    const hex = new RegExp(`^${field}:\\s+([0-9a-f]+)`, 'm').exec(status)?.[1];
    if (hex !== undefined && (BigInt(`0x${hex}`) & sigkill) !== 0n) return true;
  }
  return false;
}

function frozen(freezer: string | undefined): boolean {
  if (freezer === undefined) return false;
  // A frozen ancestor freezes every group below it: look from the process's group up.
  for (let p = freezer; ; p = path.dirname(p)) {
    if (read(path.join(cgroupFreezer, p, 'freezer.state'))?.trim() === 'FROZEN') return true;
    if (p === '/' || p === '.') return false;
  }
}

/** Every QEMU process of guest `<namespace>_<vm>` on this host. */
export function sampleQemus(guestName: string): QemuSample[] {
  const out: QemuSample[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (read(`/proc/${entry}/comm`)?.startsWith('qemu-system') !== true) continue;
    const argv = read(`/proc/${entry}/cmdline`)?.split('\0') ?? [];
    if (!namesGuest(argv, guestName)) continue;
    const freezer = freezerPath(read(`/proc/${entry}/cgroup`) ?? '');
    const status = read(`/proc/${entry}/status`);
    if (status === undefined) continue; // gone meanwhile
    out.push({
      pid: Number(entry),
      node: freezer === undefined ? undefined : nodeOfFreezerPath(freezer),
      frozen: frozen(freezer),
      dying: dyingFromStatus(status),
    });
  }
  return out;
}

/** Highest counter per boot id in a record ring. */
export function ringMaxCounters(ring: Buffer): Map<string, number> {
  const max = new Map<string, number>();
  for (let off = 0; off + 512 <= ring.length; off += 512) {
    if (ring[off] !== 0x4b) continue; // 'K'
    const end = ring.indexOf(0x0a, off);
    if (end < 0 || end >= off + 512) continue;
    const m = recordPattern.exec(ring.toString('latin1', off, end));
    if (m === null) continue;
    const n = Number(m[2]);
    const bootId = m[1] ?? '';
    if (n > (max.get(bootId) ?? 0)) max.set(bootId, n);
  }
  return max;
}

const ring = Buffer.alloc(RECORD_RING_BYTES);

/** The records on the raw disk at `file` (opened afresh), or undefined when it cannot be read now. */
export function sampleDisk(file: string): DiskSample | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const bytes = fs.readSync(fd, ring, 0, ring.length, 0);
    return { maxCounter: ringMaxCounters(ring.subarray(0, bytes)) };
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

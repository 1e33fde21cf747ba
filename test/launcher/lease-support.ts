// Launchers of one highly available VM on one lease file, for the lease suites: the
// lease configuration a launcher pod would get, and small probes (QEMU gone, the
// record on the lease file, QEMU's exit time).
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LauncherConfigInput } from '@keyvirt/launcher/api';
import { readLease } from '../../launcher/src/lease/lease-file.ts';
import type { LeaseRecord } from '../../launcher/src/lease/record.ts';
import { processAlive, type SharedVm } from '../support/launcher-process.ts';

/** The default constants (ADR 0063): the suites run with what production runs with. */
export const R_MS = 1000;
export const F_MS = 5000;
export const L_MS = 8000;

export function leaseFile(vm: SharedVm): string {
  return path.join(vm.storageDir, 'leases', 'lease');
}

/** Adds the lease block the operator renders for a highly available VM (holder given directly: no pod here). */
export function withLease(vm: SharedVm, holderId: string): (c: LauncherConfigInput) => LauncherConfigInput {
  return (c) => ({ ...c, lease: { path: leaseFile(vm), holderId, fenceDisks: ['root'] } });
}

/** Polls every 10 ms until `pid` is gone; resolves with performance.now() then. */
export async function goneAt(pid: number, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (processAlive(pid)) {
    if (performance.now() > deadline) throw new Error(`process ${pid} still alive after ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now();
}

export async function leaseRecord(vm: SharedVm): Promise<LeaseRecord | undefined> {
  const obs = await readLease(leaseFile(vm));
  return obs.kind === 'record' ? obs.record : undefined;
}

export async function inode(file: string): Promise<number> {
  return (await stat(file)).ino;
}

// Every page arrives: the dirtying test guest is migrated (pre-copy, then post-copy)
// between two QEMUs started from the launcher's own command line, the target with -S
// so that neither side runs afterwards, and both guests' RAM is dumped (pmemsave) and
// compared page by page. Under TCG, QEMU 7.2 loses guest writes on RAM blocks of whole
// 256 KiB units (ADR 0053); the launcher's command line pads guest RAM against it, and
// this suite fails on any page the target holds differently from the source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { z } from 'zod';
import { buildQemuArgs, memoryArg } from '../../launcher/src/qemu/command-line.ts';
import { QmpClient } from '../../launcher/src/qmp/client.ts';
import { createSharedVm, removeSharedVm, type SharedVm } from '../support/launcher-process.ts';
import { launcherMachinePlan } from '../support/launcher-machine-plan.ts';

const DIRTYING_USER_DATA = '#!/bin/sh\nexec /bin/dirty 100000 64 >/dev/console 2>&1\n';
const PAGE = 4096;
const empty = z.object({}).loose();
const queryMigrate = z.object({ status: z.string().optional(), ram: z.object({ 'dirty-sync-count': z.number().optional() }).loose().optional() }).loose();
const log = pino({ level: 'warn' });

interface Qemu {
  readonly qmp: QmpClient;
  readonly serialLog: string;
  stop(): Promise<void>;
}

async function startQemu(vm: SharedVm, extra: readonly string[]): Promise<{ qemu: Qemu; ramBytes: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-memcheck-'));
  const plan = await launcherMachinePlan(vm, 'tcg', dir);
  const m = /^(\d+)([KM])$/.exec(memoryArg(plan.memory, plan.accelerator));
  assert.ok(m !== null);
  const ramBytes = Number(m[1]) * (m[2] === 'K' ? 1024 : 1024 * 1024);
  const proc: ChildProcess = spawn('qemu-system-x86_64', [...buildQemuArgs(plan), ...extra], { stdio: ['ignore', 'ignore', 'ignore'] });
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  while (!(await stat(plan.sockets.qmp).then(() => true, () => false))) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      await stop();
      throw new Error('QEMU did not create its QMP socket');
    }
    await sleep(50);
  }
  const qmp = await QmpClient.connect({ path: plan.sockets.qmp, logger: log });
  return { qemu: { qmp, serialLog: plan.serialLog ?? path.join(dir, 'serial.log'), stop: async () => (qmp.close(), stop()) }, ramBytes };
}

/** Migrates source → a -S target; `postCopyAfter` switches to post-copy at that iteration. */
async function migrateAndCompare(vm: SharedVm, source: Qemu, ramBytes: number, postCopyAfter: number | null, dumpDir: string): Promise<{ differing: number; iterations: number }> {
  const { qemu: target } = await startQemu(vm, ['-incoming', 'defer', '-S']);
  try {
    const postCopy = postCopyAfter !== null;
    await target.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'postcopy-ram', state: postCopy }] }, empty);
    await target.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' }, empty);
    const listening = await target.qmp.execute('query-migrate', undefined, z.object({ 'socket-address': z.array(z.object({ port: z.string() }).loose()) }).loose());
    await source.qmp.execute(
      'migrate-set-capabilities',
      { capabilities: [{ capability: 'auto-converge', state: !postCopy }, { capability: 'postcopy-ram', state: postCopy }] },
      empty,
    );
    await source.qmp.execute('migrate-set-parameters', { 'downtime-limit': 300, 'max-bandwidth': 64 * 1024 * 1024 }, empty);
    await source.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${listening['socket-address'][0]?.port ?? ''}` }, empty);
    let info = await source.qmp.execute('query-migrate', undefined, queryMigrate);
    let switched = false;
    while (!['completed', 'failed', 'cancelled'].includes(info.status ?? '')) {
      if (postCopyAfter !== null && !switched && (info.ram?.['dirty-sync-count'] ?? 0) >= postCopyAfter) {
        switched = true;
        await source.qmp.execute('migrate-start-postcopy', undefined, empty);
      }
      await sleep(200);
      info = await source.qmp.execute('query-migrate', undefined, queryMigrate);
    }
    assert.equal(info.status, 'completed');
    for (let i = 0; i < 50 && (await target.qmp.execute('query-migrate', undefined, queryMigrate)).status !== 'completed'; i++) await sleep(100);
    const dumps = [path.join(dumpDir, 'source.ram'), path.join(dumpDir, 'target.ram')] as const;
    await source.qmp.execute('pmemsave', { val: 0, size: ramBytes, filename: dumps[0] }, empty);
    await target.qmp.execute('pmemsave', { val: 0, size: ramBytes, filename: dumps[1] }, empty);
    const [a, b] = await Promise.all(dumps.map((f) => readFile(f)));
    await Promise.all(dumps.map((f) => rm(f)));
    let differing = 0;
    for (let off = 0; off < ramBytes; off += PAGE) if (!a.subarray(off, off + PAGE).equals(b.subarray(off, off + PAGE))) differing++;
    return { differing, iterations: info.ram?.['dirty-sync-count'] ?? 0 };
  } finally {
    await target.stop();
  }
}

for (const [mode, postCopyAfter] of [['pre-copy with auto-converge', null], ['post-copy after 3 iterations', 3]] as const) {
  void test(`${mode}: the target holds every page of the source (TCG)`, { timeout: 600_000 }, async (t) => {
    const vm = await createSharedVm({ userData: DIRTYING_USER_DATA });
    t.after(() => removeSharedVm(vm));
    const dumpDir = await mkdtemp(path.join(tmpdir(), 'kv-memcheck-dumps-'));
    t.after(() => rm(dumpDir, { recursive: true, force: true }));
    const { qemu: source, ramBytes } = await startQemu(vm, []);
    t.after(() => source.stop());
    const deadline = Date.now() + 240_000;
    while (!(await readFile(source.serialLog, 'utf8').catch(() => '')).includes('dirty: pid=')) {
      assert.ok(Date.now() < deadline, 'the dirtying workload did not start');
      await sleep(500);
    }
    await sleep(2000);
    const { differing, iterations } = await migrateAndCompare(vm, source, ramBytes, postCopyAfter, dumpDir);
    t.diagnostic(`${ramBytes / PAGE} pages, ${iterations} iterations, ${differing} differing`);
    assert.equal(differing, 0, `${differing} pages of guest RAM differ between source and target after the migration`);
  });
}

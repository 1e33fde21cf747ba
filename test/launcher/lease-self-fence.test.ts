// A real launcher holding a highly available VM's lease (real QEMU, TCG, the test
// guest) whose lease I/O fails (the lease path suddenly leads to a directory: every
// open or read fails) or hangs (it becomes a FIFO: open blocks forever on the
// threadpool) kills its QEMU within F of the start of its last successful renewal,
// and ends Failed/LeaseExpired.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rename, symlink } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createSharedVm, removeSharedVm, startLauncher, waitForCounter, waitForStatus } from '../support/launcher-process.ts';
import { F_MS, goneAt, leaseFile, leaseRecord, R_MS, withLease } from './lease-support.ts';

const run = promisify(execFile);
const BOOT_TIMEOUT_MS = 180_000;

for (const fault of ['fails', 'hangs'] as const) {
  void test(`a holder whose lease I/O ${fault} kills its QEMU within F`, { timeout: 400_000 }, async (t) => {
    const vm = await createSharedVm({ diskFormat: 'raw' });
    t.after(() => removeSharedVm(vm));
    const launcher = await startLauncher({ vm, name: `ha-io-${fault}`, configure: withLease(vm, 'pod-io') });
    t.after(() => launcher.dispose());
    const running = await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'Running');
    const qemuPid = running.qemu.pid;
    assert.ok(qemuPid !== undefined);
    await waitForCounter(launcher, 3, BOOT_TIMEOUT_MS);
    const before = await leaseRecord(vm);
    assert.equal(before?.holder, 'pod-io');

    // Atomic replacement: a missing lease file would read as an empty lease (LeaseLost, not this case).
    const file = leaseFile(vm);
    const replacement = path.join(vm.storageDir, 'replacement');
    if (fault === 'fails') {
      await mkdir(path.join(vm.storageDir, 'not-a-lease'));
      await symlink(path.join(vm.storageDir, 'not-a-lease'), replacement);
    } else {
      await run('mkfifo', [replacement]);
    }
    await rename(replacement, file);
    const faultAt = performance.now();
    const goneAfter = (await goneAt(qemuPid, 3 * F_MS)) - faultAt;
    // The last successful renewal started at most R (plus its own duration) before the fault.
    assert.ok(goneAfter <= F_MS + 500, `QEMU died ${Math.round(goneAfter)} ms after the fault (F=${F_MS} ms)`);
    assert.ok(goneAfter >= F_MS - R_MS - 200, `QEMU died ${Math.round(goneAfter)} ms after the fault: before F could have passed`);
    const fence = launcher.logs().find((l) => l.msg === 'self-fencing: killing QEMU');
    assert.equal(fence?.reason, 'LeaseExpired');
    if (fault === 'fails') {
      assert.equal((await launcher.exited).code, 1);
      const ended = launcher.logs().find((l) => l.msg === 'vm ended');
      assert.deepEqual([ended?.phase, ended?.reason], ['Failed', 'LeaseExpired']);
    } else {
      // With a lease syscall hung the launcher cannot exit (libuv joins its threadpool
      // at exit); its QEMU is gone and its status says why (ADR 0063).
      const ended = await waitForStatus(launcher, (s) => s.phase === 'Failed', 5000, 'Failed');
      assert.deepEqual([ended.reason, ended.lease?.state], ['LeaseExpired', 'Lost']);
    }
    t.diagnostic(`TCG: lease I/O ${fault}: QEMU killed ${Math.round(goneAfter)} ms after the fault (R=${R_MS} ms, F=${F_MS} ms)`);
  });
}

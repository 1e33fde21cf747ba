// The double-run checker against real QEMUs (TCG here) running the test guest on one
// raw disk: one QEMU writing is clean; a second one booted while the first is frozen
// (freezer cgroup) is no double run; thawing the first makes two QEMUs run and two boot
// ids write interleaved, and the checker fails the run with the window and both boots.
// Then against two launchers (no lease) of one VM run one after the other: it finds the
// QEMU each launcher starts by the guest name the launcher gives it, and passes.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../support/cluster.ts';
import { describeDoubleRuns, DoubleRunChecker } from '../support/double-run-checker.ts';
import { createBlankDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { createSharedVm, launcherConfig, removeSharedVm, startLauncher, type LauncherProcess, type SharedVm } from '../support/launcher-process.ts';

const freezerRoot = '/sys/fs/cgroup/freezer';

void describe('double-run checker on real QEMUs', { timeout: 10 * 60_000 }, () => {
  let dir = '';
  let disk = '';
  let guest: TestGuest;
  const group = path.join(freezerRoot, `kv-double-run-${randomBytes(3).toString('hex')}`);
  const namespace = `kv-dr-${randomBytes(3).toString('hex')}`;
  const vm = 'vm';
  const qemus: ChildProcess[] = [];
  let checker: DoubleRunChecker | undefined;

  const boot = (): ChildProcess => {
    const child = spawn('qemu-system-x86_64', [
      '-name', `guest=${namespace}_${vm},debug-threads=on`, '-nodefaults', '-no-user-config', '-display', 'none',
      '-machine', 'q35,accel=tcg', '-cpu', 'qemu64', '-m', '128', '-smp', '1',
      '-serial', 'null',
      // The guest boots from its disk (read-only, shared by both QEMUs) through the firmware (ADR 0087).
      '-blockdev', `driver=file,node-name=b0,filename=${guest.disk},read-only=on`,
      '-blockdev', 'driver=qcow2,node-name=boot0,file=b0,read-only=on', '-device', 'virtio-blk-pci,drive=boot0,bootindex=1', '-boot', 'strict=on',
      // Both QEMUs open the one disk: image locking off, as two nodes without a shared lock manager would.
      '-blockdev', `driver=file,node-name=f0,filename=${disk},locking=off,cache.direct=off`,
      '-blockdev', 'driver=raw,node-name=d0,file=f0', '-device', 'virtio-blk-pci,drive=d0',
    ], { stdio: 'ignore' });
    qemus.push(child);
    return child;
  };

  before(async () => {
    guest = await testGuest();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-double-run-'));
    disk = await createBlankDisk(dir, { format: 'raw', sizeMiB: 16, name: 'disk.raw' });
    fs.mkdirSync(group);
  });

  after(async () => {
    await checker?.stop();
    try {
      fs.writeFileSync(path.join(group, 'freezer.state'), 'THAWED');
    } catch {
      // never made
    }
    for (const q of qemus) q.kill('SIGKILL');
    await sleep(300);
    try {
      fs.rmdirSync(group);
    } catch {
      // processes still leaving
    }
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('passes one QEMU writing alone, and a second one booted while the first is frozen', async () => {
    const first = boot();
    checker = DoubleRunChecker.start({ namespace, name: vm, disk });
    await eventually('the first boot writing records', async () => ((await checker?.report())?.bootIds.length === 1 ? true : undefined), 180_000, 250);
    fs.writeFileSync(path.join(group, 'cgroup.procs'), `${first.pid ?? 0}\n`);
    fs.writeFileSync(path.join(group, 'freezer.state'), 'FROZEN');
    await eventually('the freeze', () => (fs.readFileSync(path.join(group, 'freezer.state'), 'utf8').trim() === 'FROZEN' ? true : undefined), 10_000, 50);
    boot();
    const report = await eventually('the second boot writing records', async () => {
      const r = await checker?.report();
      return r !== undefined && r.bootIds.length === 2 ? r : undefined;
    }, 180_000, 250);
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.qemus.length, 2, describeDoubleRuns(report));
    assert.ok(report.maxSampleGapMs < 1000, describeDoubleRuns(report));
  });

  void it('fails the run when the frozen QEMU thaws and writes on', async () => {
    fs.writeFileSync(path.join(group, 'freezer.state'), 'THAWED');
    const report = await eventually('both rules broken', async () => {
      const r = await checker?.report();
      return r !== undefined && r.interleavings.length > 0 && r.overlaps.some((w) => w.durationMs > r.killLatencyMs) ? r : undefined;
    }, 60_000, 250);
    const account = describeDoubleRuns(report);
    assert.ok(report.violations.some((v) => /two runnable QEMUs .* beyond the kill latency/.test(v)), account);
    assert.ok(report.violations.some((v) => new RegExp(`boot ${report.bootIds[0] ?? '-'} wrote record n=\\d+ .* after boot ${report.bootIds[1] ?? '-'}`).test(v)), account);
  });
});

void describe('double-run checker on launchers run one after the other', { timeout: 10 * 60_000 }, () => {
  let shared: SharedVm | undefined;
  let launcher: LauncherProcess | undefined;
  let checker: DoubleRunChecker | undefined;

  after(async () => {
    await checker?.stop();
    await launcher?.dispose();
    if (shared !== undefined) await removeSharedVm(shared);
  });

  void it('sees each launcher\'s QEMU by its guest name and no double run', async () => {
    shared = await createSharedVm({ diskFormat: 'raw' });
    // A VM name of its own: the checker finds QEMUs by guest name on the whole host, where other launchers may run.
    const vm = { ...launcherConfig(shared, { mode: 'run', address: '127.0.0.1', tokenFile: '/x', stateDir: '/x' }).vm, namespace: `kv-dr-${randomBytes(3).toString('hex')}` };
    checker = DoubleRunChecker.start({ namespace: vm.namespace, name: vm.name, disk: shared.disk });
    for (const round of [1, 2]) {
      launcher = await startLauncher({ vm: shared, name: `dr-${String(round)}`, configure: (c) => ({ ...c, vm }) });
      const current = launcher;
      await eventually(`boot ${String(round)} writing`, async () => ((await checker?.report())?.bootIds.length === round ? true : undefined), 240_000, 250);
      const report = await checker.report();
      const qemuPid = report.qemus.at(-1)?.pid;
      assert.equal(report.qemus.length, round, describeDoubleRuns(report));
      assert.ok(qemuPid !== undefined && fs.readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8').includes(`guest=${vm.namespace}_${vm.name}`));
      await current.dispose();
      launcher = undefined;
    }
    const report = await checker.stop();
    assert.deepEqual(report.violations, [], describeDoubleRuns(report));
    assert.equal(report.bootIds.length, 2, describeDoubleRuns(report));
  });
});

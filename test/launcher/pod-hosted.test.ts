// QEMU held by the pod's PID 1 (launcher/pod/vm-pod.sh in a PID namespace of its own)
// while the launcher runs outside it (`qemu.host: pod`, ADR 0131), against real QEMU
// and the test guest: boot, guest agent, the pod's SIGTERM as a graceful stop, QEMU
// killed under the pod, the pod's PID 1 killed under QEMU, and a highly available VM
// whose launcher dies: the pod kills QEMU by its own fence deadline.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { podFenceAfterMs } from '../../launcher/src/lease/launcher-lease.ts';
import { commandOf, processTree, type HostingPod } from '../support/hosting-pod.ts';
import { createSharedVm, removeSharedVm, startLauncher, waitForCounter, waitForStatus, type LauncherExit } from '../support/launcher-process.ts';
import { processMemory } from '../support/process-memory.ts';
import { until, within } from '../support/waits.ts';
import { F_MS, goneAt, leaseRecord, R_MS, withLease } from './lease-support.ts';

const BOOT_TIMEOUT_MS = 180_000;

/** The pod's QEMU, by host pid. */
async function podQemu(pod: HostingPod): Promise<number> {
  for (const pid of await processTree(await pod.initPid())) if ((await commandOf(pid)).includes('qemu-system')) return pid;
  throw new Error('no QEMU under the pod');
}

void test('a launcher outside the pod runs the guest through the pod and stops it on the pod SIGTERM', { timeout: 600_000 }, async (t) => {
  const launcher = await startLauncher({ hostingPod: 'namespace', name: 'pod-hosted' });
  t.after(() => launcher.dispose());
  const pod = launcher.pod;
  assert.ok(pod !== undefined);

  const status = await waitForStatus(launcher, (s) => s.guestAgent.connected && s.guest.os?.id === 'debian' && s, BOOT_TIMEOUT_MS);
  t.diagnostic(`accelerator=${status.accelerator}`);
  assert.equal(status.phase, 'Running');

  await t.test('QEMU is the pod process, not the launcher child', async () => {
    const qemu = await podQemu(pod);
    const launcherPid = launcher.process.pid;
    assert.ok(launcherPid !== undefined);
    const launcherChildren = await processTree(launcherPid);
    assert.ok(!launcherChildren.includes(qemu), 'QEMU runs under the launcher');
    // The pod's own pid for QEMU (its PID namespace), as the pod reported it.
    assert.equal(status.qemu.pid, Number((await readFile(`${launcher.stateDir}/qemu.pid`, 'utf8')).trim()));
    const nsPid = (await readFile(`/proc/${String(qemu)}/status`, 'utf8')).match(/^NSpid:\s+\d+\s+(\d+)$/m)?.[1];
    assert.equal(Number(nsPid), status.qemu.pid);
  });

  await t.test('what the pod holds beside QEMU', async () => {
    const init = await pod.initPid();
    const qemu = await podQemu(pod);
    const others = [init, ...(await processTree(init))].filter((p) => p !== qemu);
    let rss = 0;
    let anon = 0;
    for (const pid of others) {
      const m = await processMemory(pid);
      rss += m.rssMiB;
      anon += m.anonMiB;
    }
    t.diagnostic(`pod beside QEMU: ${String(others.length)} processes, rss=${rss.toFixed(1)} MiB, anon=${anon.toFixed(1)} MiB`);
    assert.equal(others.length, 3, 'the pod script, its watcher and the stderr keeper');
    assert.ok(rss < 48, `the pod beside QEMU holds ${rss.toFixed(1)} MiB`);
  });

  await t.test('SIGTERM to the pod shuts the guest down; the pod exits with the launcher code', async () => {
    process.kill(await pod.initPid(), 'SIGTERM');
    const exit: LauncherExit | 'timeout' = await within(launcher.exited, 120_000);
    assert.deepEqual(exit, { code: 0, signal: null });
    const ended = launcher.logs().find((l) => l.msg === 'vm ended');
    assert.equal(ended?.phase, 'Stopped');
    assert.equal(ended?.reason, 'GuestShutdown');
    assert.deepEqual(await within(pod.exited, 10_000), { code: 0, signal: null });
    assert.match(await readFile(`${launcher.stateDir}/stop.requested`, 'utf8'), /^requested \d+\n$/);
  });
});

void test('QEMU killed in the pod ends the VM Failed/QemuKilled; the launcher and the pod exit 1', { timeout: 400_000 }, async (t) => {
  const launcher = await startLauncher({ hostingPod: 'namespace', name: 'pod-kill', configure: (c) => ({ ...c, template: { ...c.template, guestAgent: false } }) });
  t.after(() => launcher.dispose());
  const pod = launcher.pod;
  assert.ok(pod !== undefined);
  await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS);
  process.kill(await podQemu(pod), 'SIGKILL');
  assert.deepEqual(await within(launcher.exited, 60_000), { code: 1, signal: null });
  const ended = launcher.logs().find((l) => l.msg === 'vm ended');
  assert.equal(ended?.phase, 'Failed');
  assert.equal(ended?.reason, 'QemuKilled');
  assert.match(String(ended?.message), /SIGKILL/);
  assert.deepEqual(await within(pod.exited, 10_000), { code: 1, signal: null });
});

void test('the pod PID 1 killed ends QEMU with it; the launcher sees the pod gone', { timeout: 400_000 }, async (t) => {
  const launcher = await startLauncher({ hostingPod: 'namespace', name: 'pod-gone', configure: (c) => ({ ...c, template: { ...c.template, guestAgent: false } }) });
  t.after(() => launcher.dispose());
  const pod = launcher.pod;
  assert.ok(pod !== undefined);
  await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS);
  const qemu = await podQemu(pod);
  process.kill(await pod.initPid(), 'SIGKILL');
  await within(pod.exited, 10_000);
  assert.equal(await commandOf(qemu), '', 'QEMU outlived the pod');
  assert.deepEqual(await within(launcher.exited, 60_000), { code: 1, signal: null });
  const ended = launcher.logs().find((l) => l.msg === 'vm ended');
  assert.equal(ended?.phase, 'Failed');
  assert.match(String(ended?.message), /SIGKILL/);
});

void test('a highly available VM pod kills QEMU by its own fence deadline once the launcher is gone', { timeout: 400_000 }, async (t) => {
  const vm = await createSharedVm({ diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const launcher = await startLauncher({ vm, hostingPod: 'namespace', name: 'pod-fence', configure: withLease(vm, 'pod-fence') });
  t.after(() => launcher.dispose());
  const pod = launcher.pod;
  assert.ok(pod !== undefined);
  await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS);
  await waitForCounter(launcher, 3, BOOT_TIMEOUT_MS);
  assert.equal((await leaseRecord(vm))?.holder, 'pod-fence');
  const qemu = await podQemu(pod);
  // The launcher (or the node agent that runs it) dies: nothing renews the lease or the pod's deadline.
  launcher.process.kill('SIGKILL');
  const killedAt = performance.now();
  const goneAfter = (await goneAt(qemu, 3 * F_MS)) - killedAt;
  const podAfter = podFenceAfterMs(F_MS);
  assert.ok(goneAfter <= F_MS + 500, `QEMU died ${Math.round(goneAfter)} ms after the launcher (F=${F_MS} ms)`);
  assert.ok(goneAfter >= podAfter - R_MS - 200, `QEMU died ${Math.round(goneAfter)} ms after the launcher: before its deadline`);
  const exit = await until('qemu.exit', 5000, () => readFile(`${launcher.stateDir}/qemu.exit`, 'utf8').catch(() => undefined));
  assert.equal(exit, 'status 137\nfenced\n');
  assert.match(pod.output(), /fence deadline passed/);
  t.diagnostic(`TCG: the launcher killed, the pod killed QEMU ${Math.round(goneAfter)} ms later (R=${R_MS} ms, F=${F_MS} ms, pod deadline F-${F_MS - podAfter} ms)`);
});

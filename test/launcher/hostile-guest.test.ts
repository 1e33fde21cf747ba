// A hostile guest on the real test guest under QEMU: once booted it replaces its own
// guest agent by a program that writes one endless line on the agent channel, and
// floods its serial console. The launcher keeps its memory, its log and its state
// directory bounded, reports the agent gone, rotates the console log, and the VM runs on.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSharedVm, removeSharedVm, startLauncher, waitForStatus } from '../support/launcher-process.ts';

const BOOT_TIMEOUT_MS = 180_000;
/** The flood lasts until the console log has rotated once (≈ 135 KB/s under TCG here: about a minute), at most this. */
const FLOOD_MAX_MS = 180_000;
const MAX_SERIAL_BYTES = 8 * 1024 * 1024;

// Runs once at boot (the test guest's NoCloud user-data). Waits for the real agent to
// have answered, then swaps it for a flood of 'a's without newline on the same port
// (init respawns /etc/keyvirt/agent, which execs /usr/sbin/qemu-ga -p <port>), and
// writes to the serial console without pause.
const fakeAgent = ['#!/bin/sh', 'while [ $# -gt 0 ]; do [ "$1" = -p ] && port=$2; shift; done', `exec tr '\\000' a < /dev/zero > "$port"`];
const userData = [
  '#!/bin/sh',
  'sleep 15',
  // A running binary cannot be opened for writing (ETXTBSY): write aside, then rename over it.
  `printf '%s\\n' ${fakeAgent.map((l) => `'${l.replaceAll("'", `'\\''`)}'`).join(' ')} > /usr/sbin/qemu-ga.new`,
  'chmod +x /usr/sbin/qemu-ga.new',
  'mv /usr/sbin/qemu-ga.new /usr/sbin/qemu-ga',
  'killall qemu-ga',
  'echo keyvirt-guest: agent replaced > /dev/ttyS0',
  'while :; do cat /proc/cpuinfo /proc/meminfo /proc/interrupts; done > /dev/ttyS0',
  '',
].join('\n');

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

void test('a guest flooding its agent channel and serial console leaves the launcher bounded and the VM running', { timeout: 420_000 }, async (t) => {
  const vm = await createSharedVm({ userData, diskFormat: 'raw' });
  t.after(() => removeSharedVm(vm));
  const launcher = await startLauncher({ vm, name: 'hostile-guest' });
  t.after(() => launcher.dispose());
  const running = await waitForStatus(launcher, (s) => s.phase === 'Running' && s.guestAgent.connected, BOOT_TIMEOUT_MS, 'Running with the agent');
  t.diagnostic(`accelerator=${running.accelerator}`);
  const pid = launcher.process.pid;
  assert.ok(pid !== undefined);
  await launcher.waitForSerial(/keyvirt-guest: agent replaced/, 60_000);
  const rssBefore = rssKiB(pid);
  await waitForStatus(launcher, (s) => !s.guestAgent.connected, 60_000, 'agent reported gone');
  const started = Date.now();
  let largestSerial = 0;
  let largestRss = rssBefore;
  const rotatedSize = (): Promise<number> => stat(`${launcher.serialLog}.1`).then((s) => s.size, () => 0);
  let rotated = 0;
  while (Date.now() - started < FLOOD_MAX_MS) {
    largestSerial = Math.max(largestSerial, (await stat(launcher.serialLog)).size);
    largestRss = Math.max(largestRss, rssKiB(pid));
    rotated = await rotatedSize();
    // Some flooding after the rotation too: the log has started over (smaller than the
    // generation it rotated into) and grows again, bounded.
    const current = (await stat(launcher.serialLog)).size;
    if (rotated > 0 && current > 1024 * 1024 && current < rotated) break;
    await sleep(250);
  }
  const status = await launcher.client.status();
  // Warnings and errors of the agent's components: once per incident, not per line or retry.
  const overlong = launcher.logs().filter((l) => l.level >= 40 && ['guest-agent', 'agent-monitor'].includes(String(l.component))).length;
  t.diagnostic(
    `after ${Math.round((Date.now() - started) / 1000)} s of flood: serial log: largest ${(largestSerial / 2 ** 20).toFixed(1)} MiB, rotated ${(rotated / 2 ** 20).toFixed(1)} MiB; ` +
      `launcher RSS ${rssBefore} → max ${largestRss} KiB; agent warnings logged: ${overlong}`,
  );
  assert.equal(launcher.process.exitCode, null, 'the launcher exited');
  assert.equal(status.phase, 'Running');
  assert.equal(status.qemu.pid, running.qemu.pid, 'QEMU was restarted');
  assert.equal(status.guestAgent.connected, false);
  assert.ok(largestRss - rssBefore < 64 * 1024, `the launcher grew by ${largestRss - rssBefore} KiB`);
  assert.ok(rotated > MAX_SERIAL_BYTES, `the serial log never rotated (largest ${largestSerial} bytes in ${FLOOD_MAX_MS} ms)`);
  assert.ok(largestSerial < MAX_SERIAL_BYTES + 2 * 2 ** 20, `the serial log reached ${largestSerial} bytes`);
  assert.ok(overlong <= 3, `${overlong} agent warnings: the log is flooded`);
  assert.ok(launcher.logs().every((l) => !l.msg.startsWith('uncaught error')));
});

// The test guest without any disk, seed or network: it still prints its counter, and
// a root shell answers on the serial console, and qemu-ga's guest-shutdown works in both modes — a reboot (new boot id, counter from 1)
// and a power-off (QEMU exits on its own).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { parseCounterLines, testGuest } from '../support/guest.ts';
import { AgentSession } from './monitor-sockets.ts';
import { bootGuest, type BootedGuest } from './qemu-boot.ts';

void describe('test guest without disks: agent reboot and power-off', { timeout: 15 * 60_000 }, () => {
  let vm: BootedGuest | undefined;
  let agent: AgentSession | undefined;

  before(async () => {
    await testGuest();
    vm = await bootGuest({ machine: 'q35', network: false });
    agent = await AgentSession.connect(vm.agentSocket);
  });

  after(async () => {
    agent?.close();
    await vm?.dispose();
  });

  void it('prints the counter with no disk attached', async () => {
    await agent!.sync(240_000);
    const started = await vm!.waitForSerial(/keyvirt-guest: counter boot=\S+ disk=(\S+)/, 60_000);
    assert.equal(started[1], 'none');
    await vm!.waitForSerial(/KV boot=\S+ n=3 /, 60_000);
  });

  void it('runs a root shell on the serial console', async () => {
    const token = randomUUID().slice(0, 8);
    await vm!.typeOnConsole('\n');
    await vm!.typeOnConsole(`echo kv-console-$((6 * 7))-${token} $(id -u)\n`);
    await vm!.waitForSerial(new RegExp(`kv-console-42-${token} 0`), 60_000);
  });

  void it('reboots on guest-shutdown mode=reboot: new boot id, counter from 1', async () => {
    const before = parseCounterLines(await vm!.readSerial()).at(-1)!;
    agent!.send('guest-shutdown', { mode: 'reboot' });
    await vm!.waitForSerial(new RegExp(`KV boot=(?!${before.bootId})\\S+ n=2 `), 240_000);
    const after = parseCounterLines(await vm!.readSerial()).filter((r) => r.bootId !== before.bootId);
    assert.equal(after[0]?.n, 1);
    assert.match(await vm!.readSerial(), /shutdown requested \(reboot\)/);
  });

  void it('powers off on guest-shutdown (default mode): QEMU exits 0', async () => {
    await agent!.sync(240_000);
    agent!.send('guest-shutdown');
    const exit = await vm!.waitForExit(180_000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(await vm!.readSerial(), /shutdown requested \(poweroff\)/);
  });
});

// The test guest without any disk: it still prints its counter, takes a static
// address from its seed's network-config, runs a root shell on the serial console, and
// qemu-ga's guest-shutdown works in both modes — a reboot (new boot id, counter from
// 1) and a power-off (QEMU exits on its own).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createSeedIso, parseCounterLines, testGuest } from '../support/guest.ts';
import { AgentSession, runInGuest } from './monitor-sockets.ts';
import { bootGuest, type BootedGuest } from './qemu-boot.ts';

const staticNetwork = `version: 2
ethernets:
  eth0:
    addresses: [10.0.2.20/24]
    routes:
      - to: default
        via: 10.0.2.2
    nameservers:
      addresses: [10.0.2.3]
`;
const interfacesSchema = z.array(
  z.object({
    name: z.string(),
    'ip-addresses': z.array(z.object({ 'ip-address': z.string(), prefix: z.number() })).optional(),
  }),
);

void describe('test guest without disks: static network, console shell, agent reboot and power-off', { timeout: 15 * 60_000 }, () => {
  let vm: BootedGuest | undefined;
  let agent: AgentSession | undefined;

  let dir = '';

  before(async () => {
    await testGuest();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-shutdown-'));
    const seed = await createSeedIso(dir, { instanceId: 'iid-kv-guest-static', hostname: 'kv-guest-c', networkConfig: staticNetwork });
    vm = await bootGuest({ machine: 'q35', seedIso: seed });
    agent = await AgentSession.connect(vm.agentSocket);
  });

  after(async () => {
    agent?.close();
    await vm?.dispose();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('prints the counter with no disk attached', async () => {
    await agent!.sync(240_000);
    const started = await vm!.waitForSerial(/keyvirt-guest: counter boot=\S+ disk=(\S+)/, 60_000);
    assert.equal(started[1], 'none');
    await vm!.waitForSerial(/KV boot=\S+ n=3 /, 60_000);
  });

  void it('takes the static address, route and DNS of its seed network-config', async () => {
    await vm!.waitForSerial(/keyvirt-guest: eth0 static 10\.0\.2\.20\/24/, 60_000);
    const ifaces = interfacesSchema.parse(await agent!.execute('guest-network-get-interfaces'));
    const eth0 = ifaces.find((i) => i.name === 'eth0');
    assert.ok(eth0?.['ip-addresses']?.some((a) => a['ip-address'] === '10.0.2.20' && a.prefix === 24));
    const route = await runInGuest(agent!, { path: '/sbin/ip', arg: ['route', 'show', 'default'] });
    assert.match(route.stdout, /default via 10\.0\.2\.2 dev eth0/);
    const resolv = await runInGuest(agent!, { path: '/bin/cat', arg: ['/etc/resolv.conf'] });
    assert.equal(resolv.stdout, 'nameserver 10.0.2.3\n');
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

// The launcher against real QEMU and the test guest: boot, status, guest agent, the
// cloud-init seed, pause/resume, bad requests that must not disturb the VM, ACPI
// shutdown, and QEMU killed underneath the launcher.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LauncherClient, LauncherHttpError } from '@keyvirt/launcher/api';
import type { LauncherEvent } from '@keyvirt/launcher/api';
import { startLauncher, waitForStatus } from '../support/launcher-process.ts';
import { within } from '../support/waits.ts';

const BOOT_TIMEOUT_MS = 180_000;

/** Whether this host's CPU advertises vmx/svm (these machines do not: QEMU must use TCG). */
const hardwareVirtualization = /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));

async function lastCounter(counters: () => Promise<{ n: number; bootId: string }[]>): Promise<{ n: number; bootId: string }> {
  const all = await counters();
  const last = all.at(-1);
  assert.ok(last !== undefined, 'the guest printed no counter record');
  return last;
}

/** Waits until the counter has grown past `n` (same boot). */
async function counterPasses(counters: () => Promise<{ n: number; bootId: string }[]>, n: number, bootId: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await lastCounter(counters);
    assert.equal(last.bootId, bootId, 'the guest rebooted');
    if (last.n > n) return last.n;
    if (Date.now() > deadline) throw new Error(`counter stuck at ${last.n}`);
    await sleep(200);
  }
}

void test('the launcher boots the guest, reports it, survives bad requests, pauses, resumes and shuts it down', { timeout: 600_000 }, async (t) => {
  const seedValue = `seed-${Date.now().toString(36)}`;
  const launcher = await startLauncher({
    configure: (c) => ({
      ...c,
      template: { ...c.template, cloudInit: { userData: `#cloud-config\nkeyvirt-test-value: ${seedValue}\n` } },
    }),
  });
  t.after(() => launcher.dispose());
  const { client } = launcher;

  const events: LauncherEvent[] = [];
  const streamAbort = new AbortController();
  t.after(() => streamAbort.abort());
  const streaming = (async () => {
    for await (const event of client.events(streamAbort.signal)) events.push(event);
  })().catch(() => undefined);

  const info = await client.info();
  assert.deepEqual(info.apiVersions, ['v1']);
  assert.equal(info.accelerator, hardwareVirtualization ? info.accelerator : 'tcg', 'without vmx/svm the launcher must emulate');
  t.diagnostic(`accelerator=${info.accelerator}`);

  await t.test('status goes Starting → Running', async () => {
    await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS);
    const transitions = launcher.logs().filter((l) => l.msg === 'phase changed').map((l) => `${String(l.from)}→${String(l.to)}`);
    assert.equal(transitions[0], 'Starting→Running');
    const status = await client.status();
    assert.equal(typeof status.qemu.pid, 'number');
    assert.equal(status.qemu.runState, 'running');
    assert.equal(status.accelerator, info.accelerator);
    assert.ok(status.timestamps.runningSince !== undefined);
  });

  await t.test('the guest agent reports Debian 12 and the network interfaces', async () => {
    const status = await waitForStatus(
      launcher,
      (s) => s.guestAgent.connected && s.guest.interfaces.some((i) => i.ipAddresses.some((ip) => ip.address === '10.0.2.15')) && s,
      BOOT_TIMEOUT_MS,
    );
    assert.equal(status.guest.os?.id, 'debian');
    assert.equal(status.guest.os?.versionId, '12');
    assert.match(status.guest.os?.prettyName ?? '', /Debian GNU\/Linux 12/);
    const eth = status.guest.interfaces.find((i) => i.macAddress === '52:54:00:4b:56:01');
    assert.ok(eth !== undefined, `no interface with the spec MAC: ${JSON.stringify(status.guest.interfaces)}`);
    assert.ok(eth.ipAddresses.some((ip) => ip.family === 'ipv4' && ip.address === '10.0.2.15'));
  });

  await t.test('the guest read the cloud-init seed', async () => {
    await launcher.waitForSerial(new RegExp(`keyvirt-test-value: ${seedValue}`), BOOT_TIMEOUT_MS);
    const report = await launcher.waitForSerial(/keyvirt-guest: seed instance-id=(\S+) hostname=(\S+)/, 10_000);
    assert.equal(report[1], '2b9c7f5e-3d1a-4c8e-9f00-6a1b2c3d4e5f');
    assert.equal(report[2], 'guest-1');
  });

  await t.test('malformed requests and wrong tokens are rejected while the VM keeps running', async () => {
    const before = await lastCounter(launcher.counters);
    const intruder = new LauncherClient({ baseUrl: launcher.baseUrl, token: 'not-the-token-at-all' });
    await assert.rejects(intruder.action('stop'), (err: unknown) => err instanceof LauncherHttpError && err.status === 401);
    const noToken = await fetch(`${launcher.baseUrl}/v1/status`);
    assert.equal(noToken.status, 401);
    const badField = await fetch(`${launcher.baseUrl}/v1/actions/shutdown`, {
      method: 'POST',
      headers: { authorization: `Bearer ${launcher.vm.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ gracePeriodSeconds: 'soon' }),
    });
    assert.equal(badField.status, 400);
    const body = (await badField.json()) as { error: { code: string; issues: { path: string }[] } };
    assert.equal(body.error.code, 'BadRequest');
    assert.deepEqual(body.error.issues.map((i) => i.path), ['gracePeriodSeconds']);
    const unknownField = await fetch(`${launcher.baseUrl}/v1/actions/pause`, {
      method: 'POST',
      headers: { authorization: `Bearer ${launcher.vm.token}`, 'content-type': 'application/json' },
      body: '{"force": true}',
    });
    assert.equal(unknownField.status, 400);
    const notJson = await fetch(`${launcher.baseUrl}/v1/actions/stop`, {
      method: 'POST',
      headers: { authorization: `Bearer ${launcher.vm.token}`, 'content-type': 'application/json' },
      body: '{"oops',
    });
    assert.equal(notJson.status, 400);
    const unknownAction = await fetch(`${launcher.baseUrl}/v1/actions/explode`, { method: 'POST', headers: { authorization: `Bearer ${launcher.vm.token}` } });
    assert.equal(unknownAction.status, 404);
    await assert.rejects(client.action('resume'), (err: unknown) => err instanceof LauncherHttpError && err.status === 409);
    const status = await client.status();
    assert.equal(status.phase, 'Running');
    await counterPasses(launcher.counters, before.n + 3, before.bootId, 60_000);
  });

  await t.test('pause stops the guest and resume continues it', async () => {
    const paused = await client.action('pause');
    assert.equal(paused.status.phase, 'Paused');
    await sleep(500);
    const frozen = await lastCounter(launcher.counters);
    await sleep(2000);
    const still = await lastCounter(launcher.counters);
    assert.equal(still.n, frozen.n, 'the counter moved while paused');
    assert.equal((await client.status()).qemu.runState, 'paused');
    const resumed = await client.action('resume');
    assert.equal(resumed.status.phase, 'Running');
    await counterPasses(launcher.counters, still.n, still.bootId, 60_000);
  });

  await t.test('an ACPI shutdown stops the guest cleanly and the launcher exits 0', async () => {
    const accepted = await client.action('shutdown', { gracePeriodSeconds: 120 });
    assert.equal(accepted.status.phase, 'Stopping');
    const exit = await within(launcher.exited, 150_000);
    assert.notEqual(exit, 'timeout', 'the launcher did not exit');
    assert.deepEqual(exit, { code: 0, signal: null });
    const final = launcher.logs().find((l) => l.msg === 'vm ended');
    assert.equal(final?.phase, 'Stopped');
    assert.equal(final?.reason, 'GuestShutdown');
    assert.match(await launcher.serial(), /reboot: Power down/);
  });

  streamAbort.abort();
  await streaming;
  await t.test('the event stream carried the phase changes', () => {
    const phases = events.flatMap((e) => (e.type === 'status' ? [e.status.phase] : []));
    const distinct = phases.filter((p, i) => i === 0 || phases[i - 1] !== p);
    for (const want of ['Running', 'Paused', 'Running', 'Stopping', 'Stopped']) assert.ok(distinct.includes(want as never), `missing ${want} in ${distinct.join(',')}`);
    assert.ok(events.some((e) => e.type === 'qemu' && e.event === 'STOP'));
    assert.ok(events.every((e, i) => i === 0 || e.seq > (events[i - 1]?.seq ?? -1)), 'sequence numbers increase');
  });
});

void test('QEMU killed with SIGKILL is reported as Failed with the reason, and the launcher exits 1', { timeout: 400_000 }, async (t) => {
  const launcher = await startLauncher({ configure: (c) => ({ ...c, template: { ...c.template, guestAgent: false } }) });
  t.after(() => launcher.dispose());
  const running = await waitForStatus(launcher, (s) => s.phase === 'Running' && s, BOOT_TIMEOUT_MS);
  const pid = running.qemu.pid;
  assert.ok(pid !== undefined);
  process.kill(pid, 'SIGKILL');
  const failed = await waitForStatus(launcher, (s) => s.phase === 'Failed' && s, 30_000).catch(() => undefined);
  const exit = await within(launcher.exited, 60_000);
  assert.deepEqual(exit, { code: 1, signal: null });
  const ended = launcher.logs().find((l) => l.msg === 'vm ended');
  assert.equal(ended?.phase, 'Failed');
  assert.equal(ended?.reason, 'QemuKilled');
  assert.match(String(ended?.message), /SIGKILL/);
  if (failed !== undefined) {
    assert.equal(failed.reason, 'QemuKilled');
    assert.equal(failed.qemu.exit?.signal, 'SIGKILL');
  }
});

void test('a launcher that may not emulate refuses to start here with exit code 3', { timeout: 120_000, skip: hardwareVirtualization && 'this host has hardware virtualization' }, async (t) => {
  const launcher = await startLauncher({
    configure: (c) => ({ ...c, allowEmulation: false, template: { ...c.template, allowEmulation: false } }),
  }).catch((err: unknown) => err as Error);
  if (!(launcher instanceof Error)) {
    t.after(() => launcher.dispose());
    const exit = await launcher.exited;
    assert.equal(exit.code, 3);
    return;
  }
  assert.match(launcher.message, /exited with 3/);
  assert.match(launcher.message, /emulation is not allowed/);
});

void test('an invalid configuration exits with code 2 and names the field', { timeout: 120_000 }, async () => {
  const err = await startLauncher({ configure: (c) => ({ ...c, template: { ...c.template, memory: { size: 'lots' } } }) }).then(
    async (l) => {
      await l.dispose();
      return undefined;
    },
    (e: unknown) => e as Error,
  );
  assert.ok(err !== undefined, 'the launcher started with an invalid configuration');
  assert.match(err.message, /exited with 2/);
  assert.match(err.message, /template\.memory\.size/);
});

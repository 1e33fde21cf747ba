// The launcher pod's PID 1 (launcher/pod/vm-pod.sh, ADR 0131) on its own, in a PID
// namespace of its own, with stand-ins for QEMU (sleep, sh): its protocol on the state
// directory, the fence deadline, the grace period after SIGTERM, the exit code it is
// given, what it does with input it must not trust, and what it costs in memory.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PodHost } from '../../launcher/src/pod/pod-host.ts';
import { processTree, startHostingPod, type HostingPod } from '../support/hosting-pod.ts';
import { processMemory } from '../support/process-memory.ts';
import { within } from '../support/waits.ts';
import { pino } from 'pino';

const logger = pino({ level: 'silent' });

interface Pod {
  dir: string;
  pod: HostingPod;
  host: PodHost;
}

async function startPod(t: { after: (fn: () => Promise<void>) => void }, env: NodeJS.ProcessEnv = {}): Promise<Pod> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-vm-pod-'));
  const pod = await startHostingPod(dir, env);
  t.after(async () => {
    if (pod.process.exitCode === null && pod.process.signalCode === null) pod.process.kill('SIGKILL');
    await pod.exited;
    await rm(dir, { recursive: true, force: true });
  });
  const host = new PodHost({ stateDir: dir, logger });
  for (let i = 0; !(await host.podAlive()); i++) {
    assert.ok(i < 100, `the pod never opened its FIFO:\n${pod.output()}`);
    await sleep(50);
  }
  return { dir, pod, host };
}

void test('the pod starts the command line, reports its pid, stderr and exit, and exits with the given code', { timeout: 60_000 }, async (t) => {
  const { dir, pod, host } = await startPod(t);
  const lines = Array.from({ length: 25 }, (_, i) => `echo line-${String(i)} >&2`).join('; ');
  const proc = await host.spawn('/bin/sh', ['-c', `${lines}; echo ${'x'.repeat(700)} >&2; exit 3`], logger);
  assert.ok(proc.pid > 0);
  assert.deepEqual(await within(proc.exited, 10_000), { code: 3, signal: null });
  assert.equal(proc.alive(), false);
  const tail = proc.stderrTail().split('\n');
  assert.equal(tail.length, 20, 'the last 20 lines');
  assert.equal(tail.at(-2), 'line-24');
  assert.equal(tail.at(-1), 'x'.repeat(500), 'a line is cut at 500 characters');
  assert.match(pod.output(), /qemu: line-0\n/);
  await host.exitWith(42);
  assert.deepEqual(await within(pod.exited, 5000), { code: 42, signal: null });
  assert.equal(await readFile(path.join(dir, 'qemu.exit'), 'utf8'), 'status 3\n');
});

void test('kill ends the process with SIGKILL; a second start is ignored', { timeout: 60_000 }, async (t) => {
  const { pod, host } = await startPod(t);
  const proc = await host.spawn('sleep', ['100'], logger);
  assert.equal(proc.alive(), true);
  await host.send('start');
  proc.kill();
  assert.deepEqual(await within(proc.exited, 5000), { code: null, signal: 'SIGKILL' });
  assert.match(pod.output(), /start ignored: QEMU was started already/);
  assert.equal((await pod.initPid()) > 0, true);
});

void test('the fence deadline kills the process once /proc/uptime passes it, unless it is moved on', { timeout: 60_000 }, async (t) => {
  const { host } = await startPod(t);
  await host.setFenceDeadline(1500);
  const proc = await host.spawn('sleep', ['100'], logger);
  const started = performance.now();
  // Moved on twice: the pod keeps the process past the first deadlines.
  await sleep(1000);
  await host.setFenceDeadline(1500);
  await sleep(1000);
  await host.setFenceDeadline(1500);
  assert.equal(proc.alive(), true);
  const exit = await within(proc.exited, 10_000);
  const after = performance.now() - started;
  assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
  assert.match(proc.stderrTail(), /killed by the pod at its fence deadline/);
  // Last deadline: 2 s + 1.5 s after the start; the pod checks once a second.
  assert.ok(after >= 3400 && after <= 5000, `killed ${Math.round(after)} ms after the start`);
});

void test('SIGTERM is a stop request; the process is killed once the grace period has passed', { timeout: 60_000 }, async (t) => {
  const { pod, host } = await startPod(t, { KEYVIRT_GRACE_SECONDS: '2', KEYVIRT_EXIT_WAIT_SECONDS: '1' });
  const proc = await host.spawn('sleep', ['100'], logger);
  const requested = host.stopRequested(AbortSignal.timeout(10_000));
  const sent = performance.now();
  process.kill(await pod.initPid(), 'SIGTERM');
  await requested;
  assert.equal(proc.alive(), true, 'the stop request does not end the process by itself');
  assert.deepEqual(await within(proc.exited, 10_000), { code: null, signal: 'SIGKILL' });
  const after = performance.now() - sent;
  assert.ok(after >= 1900 && after <= 4000, `killed ${Math.round(after)} ms after SIGTERM (grace 2 s)`);
  // Nobody passes an exit code: the pod gives up after KEYVIRT_EXIT_WAIT_SECONDS with 70.
  assert.deepEqual(await within(pod.exited, 5000), { code: 70, signal: null });
});

void test('before a start: SIGTERM or an exit code ends the pod at once', { timeout: 60_000 }, async (t) => {
  const first = await startPod(t);
  await first.host.send('exit 3');
  assert.deepEqual(await within(first.pod.exited, 5000), { code: 3, signal: null });
  const second = await startPod(t);
  process.kill(await second.pod.initPid(), 'SIGTERM');
  assert.deepEqual(await within(second.pod.exited, 5000), { code: 0, signal: null });
});

void test('input the pod must not trust changes nothing', { timeout: 60_000 }, async (t) => {
  const { dir, pod, host } = await startPod(t);
  // No command line, a link in its place, garbage commands and out-of-range codes.
  await host.send('start');
  await symlink('/etc/hostname', path.join(dir, 'qemu.argv'));
  await host.send('start');
  for (const junk of ['exit 256', 'exit -1', 'exit 1; rm -rf /', 'pid 1', 'pid 1 1', 'ended 0', 'ended 12345 0', 'drained', 'bogus', '']) await host.send(junk);
  await writeFile(path.join(dir, 'fence.deadline'), '0; kill 1\n');
  await sleep(1500);
  assert.equal(pod.process.exitCode, null, 'the pod ended');
  await rm(path.join(dir, 'qemu.argv'));
  const proc = await host.spawn('sleep', ['100'], logger);
  await sleep(1500);
  assert.equal(proc.alive(), true, 'a malformed deadline fenced the process');
  assert.match(pod.output(), /start ignored: no qemu.argv/);
  assert.match(pod.output(), /a watcher message without the nonce ignored/);
  assert.doesNotMatch(await readFile(path.join(dir, 'qemu.pid'), 'utf8'), /^1\n$/);
  proc.kill();
  await proc.exited;
});

void test('the pod beside its process: three bash processes, a few MiB', { timeout: 60_000 }, async (t) => {
  const { pod, host } = await startPod(t);
  const proc = await host.spawn('sleep', ['100'], logger);
  const init = await pod.initPid();
  const tree = [init, ...(await processTree(init))];
  let rss = 0;
  let anon = 0;
  let count = 0;
  for (const pid of tree) {
    const cmd = (await readFile(`/proc/${String(pid)}/cmdline`, 'utf8')).split('\0');
    if (!cmd.some((c) => c.endsWith('vm-pod.sh'))) continue;
    const m = await processMemory(pid);
    rss += m.rssMiB;
    anon += m.anonMiB;
    count++;
  }
  t.diagnostic(`pod script processes=${String(count)} rss=${rss.toFixed(1)} MiB anon=${anon.toFixed(1)} MiB`);
  assert.equal(count, 3, 'the script, the watcher and the stderr keeper');
  assert.ok(rss < 16, `the pod script holds ${rss.toFixed(1)} MiB`);
  proc.kill();
  await proc.exited;
});

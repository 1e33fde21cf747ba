import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { parsePodExit, PodHost, readPodFile } from './pod-host.ts';

void test('parsePodExit reads bash wait statuses and nothing else', () => {
  assert.deepEqual(parsePodExit('status 0\n'), { code: 0, signal: null, fenced: false });
  assert.deepEqual(parsePodExit('status 1\n'), { code: 1, signal: null, fenced: false });
  assert.deepEqual(parsePodExit('status 137\nfenced\n'), { code: null, signal: 'SIGKILL', fenced: true });
  assert.deepEqual(parsePodExit('status 143\n'), { code: null, signal: 'SIGTERM', fenced: false });
  for (const bad of ['', 'status\n', 'status 256\n', 'status 1', 'status 1\nfenced', 'status 01x\n', 'status 1\nmore\n', `status 1\n${'x'.repeat(100)}`]) {
    assert.equal(parsePodExit(bad), undefined, JSON.stringify(bad));
  }
});

void test('readPodFile reads regular files only, never through a link, up to a bound', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-pod-file-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'plain'), 'status 0\n');
  assert.equal(await readPodFile(path.join(dir, 'plain')), 'status 0\n');
  await symlink('/etc/hostname', path.join(dir, 'link'));
  assert.equal(await readPodFile(path.join(dir, 'link')), undefined);
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  assert.equal(await readPodFile(path.join(dir, 'fifo')), undefined, 'a FIFO neither blocks nor reads');
  assert.equal(await readPodFile(dir), undefined);
  assert.equal(await readPodFile(path.join(dir, 'absent')), undefined);
  await writeFile(path.join(dir, 'big'), `${'a'.repeat(1024 * 1024)}tail\n`);
  const big = await readPodFile(path.join(dir, 'big'));
  assert.equal(big?.length, 16 * 1024, 'the last 16 KiB');
  assert.ok(big.endsWith('tail\n'));
});

/** A state directory whose FIFO has a reader (this process), as a live pod script's has. */
async function podState(t: { after: (fn: () => Promise<void>) => void }): Promise<{ dir: string; host: PodHost; ctl: FileHandle }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-pod-state-'));
  execFileSync('mkfifo', [path.join(dir, 'pod.ctl')]);
  const ctl = await open(path.join(dir, 'pod.ctl'), constants.O_RDWR | constants.O_NONBLOCK);
  t.after(async () => {
    await ctl.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, host: new PodHost({ stateDir: dir, logger: pino({ level: 'silent' }) }), ctl };
}

void test('attach follows only a pid the pod wrote as a plain number, in a regular file, with no exit and a live script', async (t) => {
  const { dir, host, ctl } = await podState(t);
  const log = pino({ level: 'silent' });
  const pidFile = path.join(dir, 'qemu.pid');
  await assert.rejects(host.attach(log), /no pid written/);
  for (const forged of ['', '42', '42\n43\n', '-1\n', '4.2\n', '42 \n', '12345678901\n', `${'9'.repeat(20000)}\n`, '0x2a\n']) {
    await writeFile(pidFile, forged);
    await assert.rejects(host.attach(log), /no pid written/, JSON.stringify(forged.slice(0, 20)));
  }
  await rm(pidFile);
  await symlink('/proc/self/stat', pidFile);
  await assert.rejects(host.attach(log), /no pid written/, 'a link is never followed');
  await rm(pidFile);
  execFileSync('mkfifo', [pidFile]);
  await assert.rejects(host.attach(log), /no pid written/, 'a FIFO neither blocks nor reads');
  await rm(pidFile);
  await writeFile(pidFile, '4242\n');
  await writeFile(path.join(dir, 'qemu.exit'), 'status 0\n');
  await assert.rejects(host.attach(log), /already exited/);
  await rm(path.join(dir, 'qemu.exit'));
  const proc = await host.attach(log);
  assert.equal(proc.pid, 4242);
  assert.equal(proc.alive(), true);
  proc.kill();
  await new Promise((r) => setTimeout(r, 100));
  const buffer = Buffer.alloc(64);
  const { bytesRead } = await ctl.read(buffer, 0, 64, null);
  assert.equal(buffer.subarray(0, bytesRead).toString(), 'kill\n', 'kill goes to the pod, never to a pid');
  await writeFile(path.join(dir, 'qemu.exit'), 'status 137\n');
  assert.deepEqual(await proc.exited, { code: null, signal: 'SIGKILL' });
});

void test("attach refuses a pod whose script no longer reads its FIFO", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-pod-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  execFileSync('mkfifo', [path.join(dir, 'pod.ctl')]);
  await writeFile(path.join(dir, 'qemu.pid'), '4242\n');
  await assert.rejects(new PodHost({ stateDir: dir, logger: pino({ level: 'silent' }) }).attach(pino({ level: 'silent' })), /does not read its FIFO/);
});

void test('fenceDeadlineFromNowMs reads the deadline an earlier launcher left, and nothing malformed', async (t) => {
  const { dir, host } = await podState(t);
  const file = path.join(dir, 'fence.deadline');
  assert.equal(await host.fenceDeadlineFromNowMs(), undefined);
  await host.setFenceDeadline(5000);
  const left = await host.fenceDeadlineFromNowMs();
  assert.ok(left !== undefined && left > 4800 && left <= 5000, String(left));
  for (const forged of ['', '12', 'abc\n', '1e9\n', '-5\n', `${'9'.repeat(16)}\n`]) {
    await writeFile(file, forged);
    assert.equal(await host.fenceDeadlineFromNowMs(), undefined, JSON.stringify(forged));
  }
  await rm(file);
  await symlink('/proc/uptime', file);
  assert.equal(await host.fenceDeadlineFromNowMs(), undefined, 'a link is never followed');
});

// A pod's files reached from outside it (launcher/src/pod/pod-root.ts, ADR 0132)
// against a real mount namespace: a process in its own mount and PID namespaces with a
// tmpfs only it sees, links planted where a hostile QEMU would plant them, and a
// directory swapped for a link while it is held; and pod-host.ts driving the pod's
// script over a directory only the pod sees, as the node agent will.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { PodHost } from '../../launcher/src/pod/pod-host.ts';
import { PodRoot, PodRootError } from '../../launcher/src/pod/pod-root.ts';
import { childRunning, VM_POD_SCRIPT } from '../support/hosting-pod.ts';
import { until } from '../support/waits.ts';

const run = promisify(execFile);

const SETUP = [
  'mount -t tmpfs tmpfs /mnt',
  'mkdir -p /mnt/pod/state',
  'echo pod-file > /mnt/pod/state/file',
  'ln -s /etc /mnt/pod/evil',
  'ln -s state /mnt/pod/rel',
  'ln -s /mnt/pod/state /mnt/pod/abs',
  'ln -s /etc/hostname /mnt/pod/state/link',
  'exec sleep 1000',
].join(' && ');

/** A pod in mount and PID namespaces of its own, set up by `setup` (a shell script ending in an exec of `command`); its PID 1's host pid. */
async function startPod(t: { after: (fn: () => Promise<void>) => void }, setup: string, command: string, env: NodeJS.ProcessEnv = {}): Promise<{ pid: number; output: () => string }> {
  const child = spawn('unshare', ['--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', 'sh', '-c', setup], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  let output = '';
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  return { pid: await childRunning(child.pid ?? -1, command), output: () => output };
}

async function inPod(pid: number, script: string): Promise<string> {
  return (await run('nsenter', ['--target', String(pid), '--mount', '--', 'sh', '-c', script])).stdout;
}

void test('the pod files are read in the pod view, with no link followed', { timeout: 60_000 }, async (t) => {
  const { pid } = await startPod(t, SETUP, 'sleep');
  assert.equal(existsSync('/mnt/pod'), false, 'the pod tmpfs is visible outside the pod');
  const root = await PodRoot.open(`/proc/${String(pid)}/root`);
  t.after(() => root.close());

  const state = await root.directory('/mnt/pod/state');
  t.after(() => state.close());
  const file = await state.openFile('file', constants.O_RDONLY);
  assert.equal(await file.readFile('utf8'), 'pod-file\n');
  await file.close();
  assert.equal(state.inPod('file'), '/mnt/pod/state/file');

  // The hazard: through /proc/<pid>/root an absolute link resolves against the caller's root.
  await assert.rejects(readFile(`/proc/${String(pid)}/root/mnt/pod/abs/file`), { code: 'ENOENT' });

  for (const link of ['/mnt/pod/evil', '/mnt/pod/rel', '/mnt/pod/abs', '/mnt/pod/evil/ssh']) {
    await assert.rejects(root.directory(link), (err: unknown) => err instanceof PodRootError && /is a symbolic link/.test(err.message), link);
  }
  await assert.rejects(state.openFile('link', constants.O_RDONLY), /the pod's \/mnt\/pod\/state\/link is a symbolic link/);
  for (const bad of ['/mnt/pod/state/../evil', 'mnt/pod/state', '/mnt/./pod', '/mnt/pod\0/x']) {
    await assert.rejects(root.directory(bad), PodRootError, bad);
  }
  for (const name of ['..', '.', 'a/b', '', 'x\0']) assert.throws(() => state.entry(name), PodRootError, JSON.stringify(name));
});

void test('a held directory stays the pod directory when its path is swapped for a link', { timeout: 60_000 }, async (t) => {
  const { pid } = await startPod(t, SETUP, 'sleep');
  const root = await PodRoot.open(`/proc/${String(pid)}/root`);
  t.after(() => root.close());
  const state = await root.directory('/mnt/pod/state');
  t.after(() => state.close());
  await inPod(pid, 'mv /mnt/pod/state /mnt/pod/moved && ln -s /etc /mnt/pod/state');
  const created = await state.openFile('written-by-the-agent', constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
  await created.writeFile('x');
  await created.close();
  assert.equal(await inPod(pid, 'cat /mnt/pod/moved/written-by-the-agent'), 'x');
  assert.equal(existsSync('/etc/written-by-the-agent'), false);
  // Walked again, the path is refused.
  await assert.rejects(root.directory('/mnt/pod/state'), /is a symbolic link/);
});

void test('pod-host drives the pod script over a held directory that only the pod sees', { timeout: 60_000 }, async (t) => {
  const { pid } = await startPod(t, `mount -t tmpfs tmpfs /mnt && mkdir -p /mnt/pod/state && exec bash ${VM_POD_SCRIPT}`, 'vm-pod.sh', { KEYVIRT_STATE_DIR: '/mnt/pod/state' });
  const root = await PodRoot.open(`/proc/${String(pid)}/root`);
  t.after(() => root.close());
  const held = await until('the pod state directory', 5000, () => root.directory('/mnt/pod/state').catch(() => undefined));
  t.after(() => held.close());
  const host = new PodHost({ stateDir: held.descriptorPath, logger: pino({ level: 'silent' }) });
  const proc = await host.spawn('sh', ['-c', 'echo from-the-pod >&2; exec sleep 100'], pino({ level: 'silent' }));
  assert.ok(proc.pid > 0);
  // A link planted where the pod writes QEMU's exit is not read through.
  await inPod(pid, 'ln -s /etc/hostname /mnt/pod/state/qemu.exit');
  await sleep(1500);
  assert.equal(proc.alive(), true, 'a link as qemu.exit ended the process');
  await inPod(pid, 'rm /mnt/pod/state/qemu.exit');
  proc.kill();
  assert.deepEqual(await proc.exited, { code: null, signal: 'SIGKILL' });
  assert.match(proc.stderrTail(), /from-the-pod/);
});

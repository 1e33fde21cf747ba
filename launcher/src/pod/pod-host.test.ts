import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parsePodExit, readPodFile } from './pod-host.ts';

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

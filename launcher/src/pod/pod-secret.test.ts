import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { PodRoot } from './pod-root.ts';
import type { PodDirectory } from './pod-root.ts';
import { PodSecretError, readPodSecretFile } from './pod-secret.ts';

const STAMP = '..2026_12_01_17_44_36.123456789';

/** A fresh pod root with an empty `/vol`, and that directory held as the reader gets it. */
async function volume(t: TestContext): Promise<{ vol: string; open: () => Promise<PodDirectory> }> {
  const root = await mkdtemp(path.join(tmpdir(), 'kv-pod-secret-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const vol = path.join(root, 'vol');
  await mkdir(vol);
  return {
    vol,
    open: async () => {
      const podRoot = await PodRoot.open(root);
      t.after(() => podRoot.close());
      const dir = await podRoot.directory('/vol');
      t.after(() => dir.close());
      return dir;
    },
  };
}

/** The kubelet's atomic-writer layout: `..<stamp>/` with the files, `..data -> ..<stamp>`, `<key> -> ..data/<key>`. */
async function kubeletLayout(vol: string, files: Record<string, string>): Promise<void> {
  await mkdir(path.join(vol, STAMP));
  for (const [key, content] of Object.entries(files)) {
    await writeFile(path.join(vol, STAMP, key), content);
    await symlink(`..data/${key}`, path.join(vol, key));
  }
  await symlink(STAMP, path.join(vol, '..data'));
}

async function refused(promise: Promise<Buffer>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PodSecretError, `a PodSecretError, not ${String(err)}`);
    assert.equal(err.name, 'PodSecretError');
    assert.match(err.message, pattern);
    return true;
  });
}

void test('reads a kubelet-style secret through its own links', async (t) => {
  const { vol, open } = await volume(t);
  await kubeletLayout(vol, { 'config.json': '{"a":1}\n', token: 'secret' });
  const dir = await open();
  assert.equal((await readPodSecretFile(dir, 'config.json', 1024)).toString('utf8'), '{"a":1}\n');
  assert.equal((await readPodSecretFile(dir, 'token', 6)).toString('utf8'), 'secret', 'exactly maxBytes is allowed');
  assert.equal((await readPodSecretFile(dir, 'token', 6)).toString('utf8'), 'secret', 'handles are released and reads repeat');
});

void test('reads plain regular files (the node simulator) and empty ones', async (t) => {
  const { vol, open } = await volume(t);
  await writeFile(path.join(vol, 'config.json'), '{"b":2}');
  await writeFile(path.join(vol, 'empty'), '');
  const dir = await open();
  assert.equal((await readPodSecretFile(dir, 'config.json', 1024)).toString('utf8'), '{"b":2}');
  assert.equal((await readPodSecretFile(dir, 'empty', 0)).length, 0);
});

void test('refuses a key linked anywhere but ..data/<key>', async (t) => {
  const { vol, open } = await volume(t);
  await kubeletLayout(vol, { other: 'x' });
  await symlink('/etc/passwd', path.join(vol, 'abs'));
  await symlink('..data/other', path.join(vol, 'wrong'));
  await symlink('../outside', path.join(vol, 'up'));
  await symlink(`${STAMP}/deep`, path.join(vol, 'deep'));
  await symlink('..data/deep/more', path.join(vol, 'more'));
  const dir = await open();
  await refused(readPodSecretFile(dir, 'abs', 1024), /the pod's secret \/vol\/abs is a symbolic link to "\/etc\/passwd", not to "\.\.data\/abs"/);
  await refused(readPodSecretFile(dir, 'wrong', 1024), /\/vol\/wrong is a symbolic link to "\.\.data\/other"/);
  await refused(readPodSecretFile(dir, 'up', 1024), /\/vol\/up is a symbolic link to "\.\.\/outside"/);
  await refused(readPodSecretFile(dir, 'deep', 1024), /\/vol\/deep is a symbolic link/);
  await refused(readPodSecretFile(dir, 'more', 1024), /\/vol\/more is a symbolic link to "\.\.data\/deep\/more"/);
});

void test('refuses ..data that is not a link to a timestamped directory beside it', async (t) => {
  for (const [target, pattern] of [
    ['/etc', /\/vol\/\.\.data is a symbolic link to "\/etc", not to a timestamped directory/],
    ['../outside', /\/vol\/\.\.data is a symbolic link to "\.\.\/outside"/],
    [`${STAMP}/x`, /\/vol\/\.\.data is a symbolic link to ".*\/x"/],
    ['..', /\/vol\/\.\.data is a symbolic link to "\.\."/],
    ['data', /\/vol\/\.\.data is a symbolic link to "data"/],
  ] as const) {
    const { vol, open } = await volume(t);
    await mkdir(path.join(vol, STAMP));
    await writeFile(path.join(vol, STAMP, 'passwd'), 'root:x:0:0\n');
    await symlink('..data/passwd', path.join(vol, 'passwd'));
    await symlink(target, path.join(vol, '..data'));
    await refused(readPodSecretFile(await open(), 'passwd', 1024), pattern);
  }
});

void test('refuses a missing, non-link or linked ..data target', async (t) => {
  {
    const { vol, open } = await volume(t);
    await symlink('..data/key', path.join(vol, 'key'));
    await refused(readPodSecretFile(await open(), 'key', 1024), /\/vol\/\.\.data does not exist/);
  }
  {
    const { vol, open } = await volume(t);
    await symlink('..data/key', path.join(vol, 'key'));
    await mkdir(path.join(vol, '..data'));
    await refused(readPodSecretFile(await open(), 'key', 1024), /\/vol\/\.\.data is not a symbolic link/);
  }
  {
    const { vol, open } = await volume(t);
    await symlink('..data/key', path.join(vol, 'key'));
    await symlink(STAMP, path.join(vol, '..data'));
    await symlink('/etc', path.join(vol, STAMP));
    await refused(readPodSecretFile(await open(), 'key', 1024), /\/vol\/key: the pod's \/vol\/\.\.2026[0-9_.]* is a symbolic link/);
  }
  {
    const { vol, open } = await volume(t);
    await symlink('..data/key', path.join(vol, 'key'));
    await symlink(STAMP, path.join(vol, '..data'));
    await writeFile(path.join(vol, STAMP), 'a file');
    await refused(readPodSecretFile(await open(), 'key', 1024), /is not a directory/);
  }
  {
    const { vol, open } = await volume(t);
    await kubeletLayout(vol, {});
    await symlink('..data/key', path.join(vol, 'key'));
    await refused(readPodSecretFile(await open(), 'key', 1024), /\/vol\/key \(\/vol\/\.\.2026[0-9_.]*\/key\) does not exist/);
  }
  {
    const { vol, open } = await volume(t);
    await kubeletLayout(vol, {});
    await symlink('/etc/passwd', path.join(vol, STAMP, 'key'));
    await symlink('..data/key', path.join(vol, 'key'));
    await refused(readPodSecretFile(await open(), 'key', 1024), /\/vol\/key \(.*\/key\) is a symbolic link, not a regular file/);
  }
});

void test('refuses an oversize file, plain or behind the links', async (t) => {
  const { vol, open } = await volume(t);
  await kubeletLayout(vol, { big: 'x'.repeat(101) });
  await writeFile(path.join(vol, 'plain'), 'y'.repeat(101));
  const dir = await open();
  await refused(readPodSecretFile(dir, 'big', 100), /\/vol\/big .* is larger than 100 bytes/);
  await refused(readPodSecretFile(dir, 'plain', 100), /\/vol\/plain is larger than 100 bytes/);
  assert.equal((await readPodSecretFile(dir, 'plain', 101)).length, 101);
});

void test('refuses a FIFO without blocking, a directory and a missing file', async (t) => {
  const { vol, open } = await volume(t);
  execFileSync('mkfifo', [path.join(vol, 'fifo')]);
  await mkdir(path.join(vol, 'subdir'));
  await kubeletLayout(vol, {});
  execFileSync('mkfifo', [path.join(vol, STAMP, 'linkedfifo')]);
  await symlink('..data/linkedfifo', path.join(vol, 'linkedfifo'));
  const dir = await open();
  await refused(readPodSecretFile(dir, 'fifo', 1024), /\/vol\/fifo is a FIFO, not a regular file/);
  await refused(readPodSecretFile(dir, 'linkedfifo', 1024), /\/vol\/linkedfifo .* is a FIFO, not a regular file/);
  await refused(readPodSecretFile(dir, 'subdir', 1024), /\/vol\/subdir is a directory, not a regular file/);
  await refused(readPodSecretFile(dir, 'absent', 1024), /the pod's secret \/vol\/absent does not exist/);
  await refused(readPodSecretFile(dir, '../etc', 1024), /"\.\.\/etc" is not a single file name/);
  await assert.rejects(readPodSecretFile(dir, 'absent', -1), RangeError);
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { prepareTap, removeTap, TapSetupError } from './tap.ts';
import type { IpRunner } from './tap.ts';

const run = promisify(execFile);

/** A throwaway network namespace with a bridge; `ip` runs inside it. */
async function namespace(t: { after: (fn: () => Promise<void>) => void }): Promise<IpRunner> {
  const ns = `kv-tap-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  await run('ip', ['netns', 'add', ns]);
  t.after(async () => {
    await run('ip', ['netns', 'del', ns]);
  });
  const ip: IpRunner = async (args) => (await run('ip', ['-n', ns, ...args])).stdout;
  await ip(['link', 'add', 'br0', 'type', 'bridge']);
  return ip;
}

interface Link {
  ifname: string;
  master?: string;
  flags: string[];
}

async function link(ip: IpRunner, name: string): Promise<Link | undefined> {
  const out = await ip(['-j', 'link', 'show', 'dev', name]).catch(() => undefined);
  return out === undefined ? undefined : (JSON.parse(out) as Link[])[0];
}

void test('creates a tap, enslaves it to the bridge, brings it up, and removes it', async (t) => {
  const ip = await namespace(t);
  assert.equal(await prepareTap({ name: 'tap-default', bridge: 'br0' }, ip), true);
  const tap = await link(ip, 'tap-default');
  assert.equal(tap?.master, 'br0');
  assert.ok(tap?.flags.includes('UP'));
  assert.equal(await prepareTap({ name: 'tap-default', bridge: 'br0' }, ip), false, 'an existing tap is reused');
  await removeTap('tap-default', ip);
  assert.equal(await link(ip, 'tap-default'), undefined);
});

void test('a missing bridge is a TapSetupError', async (t) => {
  const ip = await namespace(t);
  await assert.rejects(prepareTap({ name: 'tap-x', bridge: 'nobridge' }, ip), TapSetupError);
});

// The Node.js floor measured from real node processes: the recorder reports what a
// process loaded, and a floor that requires builtins and listens holds more than node alone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { builtinsRecording, floorScript, nodeFloor, publicBuiltins } from './node-floor.ts';

void test('public builtins: internal modules and unknown names are dropped, each kept once', () => {
  assert.deepEqual(publicBuiltins(['net', 'internal/net', 'http', 'net', 'not-a-builtin', 'dgram']), ['dgram', 'http', 'net']);
  assert.equal(floorScript(['net'], false), `require("node:net");process.stdout.write('ready\\n');setInterval(() => {}, 1 << 30);`);
});

void test('a recorded process lists its builtins on SIGUSR2; the floor with them outweighs node alone', { timeout: 60_000 }, async (t) => {
  const recording = await builtinsRecording();
  t.after(() => recording.dispose());
  const child = spawn(process.execPath, ['--lite-mode', ...recording.nodeArgs, '-e', `require('node:dgram');require('node:http');setInterval(() => {}, 1 << 30);`], {
    env: { ...process.env, ...recording.env },
    stdio: 'ignore',
  });
  t.after(async () => {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  });
  const loaded = await recording.read(child.pid ?? -1);
  assert.ok(loaded.includes('dgram') && loaded.includes('http'), loaded.join(' '));
  const floor = await nodeFloor(process.execPath, ['--lite-mode'], loaded, 1, 300);
  t.diagnostic(`bare ${floor.bare.rssMiB.toFixed(1)} MiB, with ${floor.builtinCount} builtins ${floor.builtins.rssMiB.toFixed(1)} MiB`);
  assert.ok(floor.builtinCount >= 2);
  assert.ok(floor.bare.rssMiB > 10, 'node alone is resident');
  assert.ok(floor.builtins.rssMiB > floor.bare.rssMiB, 'the builtins and a server cost memory');
});

void test('a floor whose node cannot be started fails with the spawn error instead of waiting', { timeout: 10_000 }, async () => {
  await assert.rejects(nodeFloor('/nonexistent/node', [], [], 1, 0), /ENOENT/);
});

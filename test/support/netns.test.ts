import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { promisify } from 'node:util';
import { createPeerHost } from './netns.ts';

const run = promisify(execFile);

void test('a peer host namespace is reachable over its veth link and removed afterwards', async (t) => {
  const peer = await createPeerHost();
  t.after(() => peer.destroy());
  assert.match(peer.address, /^10\.78\.0\.\d+$/);

  // A listener inside the namespace, dialled from the root namespace.
  const script = [
    "const s = require('node:net').createServer((c) => c.end('peer'));",
    `s.listen(0, '${peer.address}', () => console.log(s.address().port));`,
  ].join('\n');
  const [cmd, ...args] = [...peer.exec, process.execPath, '-e', script];
  const listener = spawn(cmd ?? 'ip', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => listener.kill());
  const [chunk] = (await once(listener.stdout, 'data')) as [Buffer];
  const port = Number(chunk.toString().trim());
  const socket = net.createConnection({ host: peer.address, port });
  const [data] = (await once(socket, 'data')) as [Buffer];
  assert.equal(data.toString(), 'peer');
  socket.destroy();

  // The namespace holds only its loopback and its end of the link.
  const { stdout } = await run(peer.exec[0] ?? 'ip', [...peer.exec.slice(1), 'ip', '-o', 'link']);
  assert.equal(stdout.trim().split('\n').length, 2);

  await peer.destroy();
  const { stdout: list } = await run('ip', ['netns', 'list']);
  assert.ok(!list.split('\n').some((l) => l.startsWith(`${peer.name} `) || l === peer.name));
});

// A listener made in another network namespace and served outside it
// (launcher/src/pod/netns-listen.ts): the launcher API of a pod whose launcher runs in
// the node agent. The namespace is a peer host joined by a veth pair (test/support/netns.ts).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { bearerTokenCheck } from '../../launcher/src/http/auth.ts';
import { ApiServer } from '../../launcher/src/http/server.ts';
import { listenInNetns, NetnsListenError } from '../../launcher/src/pod/netns-listen.ts';
import { createPeerHost } from '../support/netns.ts';

const run = promisify(execFile);

void test('a socket bound in the pod namespace serves the launcher API from outside it', { timeout: 60_000 }, async (t) => {
  const peer = await createPeerHost();
  t.after(() => peer.destroy());
  const netns = `/run/netns/${peer.name}`;
  const listening = await listenInNetns({ netns, host: peer.address, port: 0 });
  const api = new ApiServer(pino({ level: 'silent' }), bearerTokenCheck('a-token-of-enough-length-0123456789'));
  api.route('GET', '/v1/ping', () => Promise.resolve({ status: 200, body: { pong: true } }));
  const address = await api.listenOn(listening);
  t.after(() => api.close());
  assert.equal(address.address, peer.address);

  // Inside the namespace the socket is this process's.
  const { stdout } = await run('ip', ['netns', 'exec', peer.name, 'ss', '-Hltnp', `sport = :${String(address.port)}`]);
  assert.match(stdout, new RegExp(`pid=${String(process.pid)},`), `the listener is not this process's: ${stdout}`);
  // From the root namespace, over the veth pair, as the operator reaches a pod.
  const response = await fetch(`http://${peer.address}:${String(address.port)}/v1/ping`, { headers: { authorization: 'Bearer a-token-of-enough-length-0123456789' } });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { pong: true });
  // The root namespace's loopback has no such listener.
  const refused = await new Promise<string>((resolve) => {
    const socket = net.connect(address.port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');
});

void test('a listener that cannot be made is an error naming where', { timeout: 60_000 }, async (t) => {
  const peer = await createPeerHost();
  t.after(() => peer.destroy());
  const netns = `/run/netns/${peer.name}`;
  // An address the namespace does not have.
  await assert.rejects(listenInNetns({ netns, host: '10.99.99.99', port: 0 }), (err: unknown) => err instanceof NetnsListenError && /EADDRNOTAVAIL/.test(err.message));
  // A port taken in the namespace.
  const first = await listenInNetns({ netns, host: peer.address, port: 0 });
  t.after(() => first.close());
  const port = (first.address() as net.AddressInfo).port;
  await assert.rejects(listenInNetns({ netns, host: peer.address, port }), /EADDRINUSE/);
  await assert.rejects(listenInNetns({ netns: '/run/netns/kv-no-such-namespace', host: peer.address, port: 0 }), /ended/);
  await assert.rejects(listenInNetns({ netns: 'relative', host: peer.address, port: 0 }), /not a namespace path/);
  await assert.rejects(listenInNetns({ netns, host: 'pod.example', port: 0 }), /not an IP address/);
});

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { probeLoop, runProbe, type ProbeTarget } from './probes.ts';

const target = (namedPorts: ReadonlyMap<string, number> = new Map()): ProbeTarget => ({ podIp: '127.0.0.1', pid: () => undefined, namedPorts });

async function listening<T extends net.Server>(server: T): Promise<{ server: T; port: number }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function closedPort(): Promise<number> {
  const { server, port } = await listening(net.createServer());
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

void describe('container probes', () => {
  void it('tcpSocket: a listener passes, a closed port fails with the dial error', async () => {
    const { server, port } = await listening(net.createServer((s) => s.destroy()));
    try {
      assert.deepEqual(await runProbe({ tcpSocket: { port: 'api' } }, target(new Map([['api', port]]))), { ok: true });
    } finally {
      server.close();
    }
    const closed = await closedPort();
    const result = await runProbe({ tcpSocket: { port: closed } }, target());
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.reason, new RegExp(`^dial tcp 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED`));
  });

  void it('httpGet: 2xx passes, 500 fails naming the status code; an unknown named port fails', async () => {
    let status = 200;
    const { server, port } = await listening(http.createServer((_req, res) => { res.statusCode = status; res.end(); }));
    try {
      assert.deepEqual(await runProbe({ httpGet: { port, path: '/healthz' } }, target()), { ok: true });
      status = 500;
      assert.deepEqual(await runProbe({ httpGet: { port, path: '/healthz' } }, target()), { ok: false, reason: 'HTTP probe failed with statuscode: 500' });
    } finally {
      server.close();
    }
    assert.deepEqual(await runProbe({ tcpSocket: { port: 'nope' } }, target()), { ok: false, reason: 'unknown container port nope' });
  });

  void it('probeLoop reports each failure with its count and flips only at the threshold', async () => {
    const closed = await closedPort();
    const failures: number[] = [];
    const changes: boolean[] = [];
    const abort = new AbortController();
    const loop = probeLoop({
      probe: { tcpSocket: { port: closed }, periodSeconds: 0, failureThreshold: 3 }, target: target(), initial: true, signal: abort.signal,
      onChange: (h) => {
        changes.push(h);
        abort.abort();
      },
      onFailure: (_reason, consecutive) => failures.push(consecutive),
    });
    await loop.catch(() => undefined);
    assert.deepEqual(failures, [1, 2, 3]);
    assert.deepEqual(changes, [false]);
  });
});

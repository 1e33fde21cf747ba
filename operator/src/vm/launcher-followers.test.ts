import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { LAUNCHER_API_VERSIONS } from '@keyvirt/launcher/api';
import { LauncherFollowers } from './launcher-followers.ts';

const log = pino({ level: 'silent' });

/** A launcher stand-in on loopback: /v1/info, and /v1/events that sends only heartbeat lines while `beating`. */
async function heartbeatServer(): Promise<{ url: string; setBeating(on: boolean): void; close(): Promise<void> }> {
  let beating = true;
  const streams = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    if (req.url === '/v1/info') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersions: [...LAUNCHER_API_VERSIONS], launcherVersion: 't', accelerator: 'tcg', acceleratorReason: 'test', mode: 'run', vm: { name: 'a', namespace: 'n', uid: 'u' } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    streams.add(res);
    res.once('close', () => streams.delete(res));
  });
  const timer = setInterval(() => {
    if (beating) for (const s of streams) s.write('\n');
  }, 50);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    setBeating: (on) => (beating = on),
    close: async () => {
      clearInterval(timer);
      for (const s of streams) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

void describe('LauncherFollowers silence', () => {
  void it('heartbeat lines count as hearing the launcher; silence past the threshold and hearing it again each signal a change', async () => {
    const server = await heartbeatServer();
    const changes: string[] = [];
    const followers = new LauncherFollowers({ log, sleep: (ms) => sleep(ms), onChange: (k) => changes.push(k), silenceThresholdMs: 300 });
    const stop = new AbortController();
    const watching = followers.watchSilence(stop.signal);
    try {
      assert.equal(followers.silentMs('n/a', 'pod-1'), undefined, 'not followed yet');
      followers.ensure('n/a', { podUid: 'pod-1', baseUrl: server.url, token: 't' });
      await sleep(400);
      const beating = followers.silentMs('n/a', 'pod-1');
      assert.ok(beating !== undefined && beating < 200, `heard within the heartbeat period, got ${String(beating)}`);
      assert.equal(followers.silentMs('n/a', 'other-pod'), undefined, 'another pod of the key is not this follower');
      server.setBeating(false);
      await sleep(800);
      const silent = followers.silentMs('n/a', 'pod-1') ?? 0;
      assert.ok(silent >= 600, `silent since the heartbeats stopped, got ${silent}`);
      assert.deepEqual(changes, ['n/a'], 'one change when the threshold was crossed');
      server.setBeating(true);
      await sleep(300);
      assert.ok((followers.silentMs('n/a', 'pod-1') ?? 1000) < 200);
      assert.deepEqual(changes, ['n/a', 'n/a'], 'one change when heard again');
    } finally {
      stop.abort();
      followers.stopAll();
      await watching;
      await server.close();
    }
  });
});

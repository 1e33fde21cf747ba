// The event stream over a real loopback HTTP connection: the status first, then a
// heartbeat line every 500 ms while nothing happens, so that a follower can tell a
// silent launcher within about two seconds.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Status } from '../api/status.ts';
import type { QmpEvent } from '../qmp/messages.ts';
import { EventStreams } from './event-stream.ts';

const status: Status = {
  phase: 'Running',
  accelerator: 'tcg',
  qemu: {},
  guestAgent: { connected: false },
  guest: { interfaces: [] },
  disks: [],
  lease: { state: 'Held', holderId: 'pod-a', holder: 'pod-a', generation: 2 },
  timestamps: { launcherStartedAt: new Date(0).toISOString(), phaseTransitionAt: new Date(0).toISOString() },
};

class Source extends EventEmitter<{ status: [Status]; qemu: [QmpEvent] }> {
  readonly status = status;
}

void describe('event stream', () => {
  void it('sends the status, then a heartbeat every 500 ms', async () => {
    const streams = new EventStreams(new Source());
    const server = createServer((_req, res) => streams.serve(res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const req = request({ host: '127.0.0.1', port, path: '/' });
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (text += chunk));
    await new Promise((r) => setTimeout(r, 1750));
    req.destroy();
    server.close();
    const lines = text.split('\n');
    const first = JSON.parse(lines[0] ?? '{}') as { type: string; status: Status };
    assert.equal(first.type, 'status');
    assert.equal(first.status.lease?.state, 'Held');
    const heartbeats = lines.slice(1, -1).filter((l) => l === '').length;
    // 3 on time (500, 1000, 1500 ms); timers that run late on a loaded host may make it 2.
    assert.ok(heartbeats >= 2 && heartbeats <= 4, `${heartbeats} heartbeats in 1.75 s`);
  });
});

// The guest-agent client and monitor against a hostile agent: a line that never ends,
// an overlong reply followed by good ones, and reports far beyond any real guest's.
// Memory stays bounded, the failing request gets a typed error, the channel resyncs,
// and the status carries only what GUEST_REPORT_LIMITS allow.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { GUEST_REPORT_LIMITS } from '../api/guest-report-bounds.ts';
import { guestAgentStatus, guestStatus } from '../supervisor/guest-status.ts';
import { GuestAgentClient } from './client.ts';
import { AgentLineTooLongError, AgentSyncError } from './errors.ts';
import { GuestAgentMonitor } from './monitor.ts';

const logger = pino({ level: 'silent' });

interface Cmd {
  execute: string;
  arguments?: Record<string, unknown>;
}

type Answer = (cmd: Cmd, sock: net.Socket) => void;

async function hostileAgent(t: { after: (fn: () => Promise<void>) => void }, answer: Answer): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-qga-hostile-'));
  const sockPath = path.join(dir, 'qga.sock');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    let rest = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      rest = Buffer.from(Buffer.concat([rest, chunk]).filter((b) => b !== 0xff));
      for (let nl = rest.indexOf(0x0a); nl >= 0; nl = rest.indexOf(0x0a)) {
        const cmd = JSON.parse(rest.subarray(0, nl).toString()) as Cmd;
        rest = rest.subarray(nl + 1);
        if (cmd.execute === 'guest-sync-delimited') {
          sock.write(Buffer.from([0xff]));
          sock.write(`${JSON.stringify({ return: cmd.arguments?.id })}\n`);
        } else answer(cmd, sock);
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(sockPath, resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  return sockPath;
}

/** Writes `a`s until the socket closes or `limit` bytes went out; resolves with the count. */
function endlessLine(sock: net.Socket, limit: number): Promise<number> {
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  let sent = 0;
  return new Promise((resolve) => {
    const pump = (): void => {
      while (!sock.destroyed && sent < limit) {
        sent += chunk.length;
        if (!sock.write(chunk)) {
          sock.once('drain', pump);
          return;
        }
      }
      resolve(sent);
    };
    sock.once('close', () => resolve(sent));
    pump();
  });
}

void test('a reply line that never ends fails the request with AgentLineTooLongError, without buffering it', async (t) => {
  let flooding: Promise<number> | undefined;
  const agentPath = await hostileAgent(t, (_cmd, sock) => {
    flooding = endlessLine(sock, 256 * 1024 * 1024);
  });
  const client = new GuestAgentClient({ path: agentPath, logger, maxLineBytes: 64 * 1024, commandTimeoutMs: 20_000 });
  await client.connect();
  const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  await assert.rejects(client.ping(), AgentLineTooLongError);
  assert.equal(client.linesTooLong, 1);
  // The agent goes on writing; the client keeps discarding without growing.
  await new Promise((r) => setTimeout(r, 500));
  const grown = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;
  client.close();
  const sent = (await flooding) ?? 0;
  assert.ok(sent > 4 * 1024 * 1024, `the agent sent only ${sent} bytes`);
  assert.ok(grown < sent / 2, `memory grew by ${grown} bytes while ${sent} bytes were sent`);
});

void test('after an overlong reply the channel resynchronises: the next request is answered', async (t) => {
  let n = 0;
  const agentPath = await hostileAgent(t, (cmd, sock) => {
    n++;
    if (n === 1) sock.write(`{"return": "${'x'.repeat(200 * 1024)}"}\n`);
    sock.write(`${JSON.stringify({ return: {} })}\n`);
  });
  const client = new GuestAgentClient({ path: agentPath, logger, maxLineBytes: 64 * 1024 });
  await client.connect();
  // The first ping's answer is the overlong line; the good line right behind it is stale.
  await assert.rejects(client.ping(), (err: unknown) => err instanceof AgentLineTooLongError && err.limitBytes === 64 * 1024);
  assert.deepEqual(await client.execute('guest-ping', undefined, (await import('./messages.ts')).emptyObjectSchema), {});
  client.close();
});

void test('reports beyond any real guest reach the status only within GUEST_REPORT_LIMITS', async (t) => {
  const huge = 'h'.repeat(300 * 1024);
  const agentPath = await hostileAgent(t, (cmd, sock) => {
    const reply = (value: unknown): boolean => sock.write(`${JSON.stringify({ return: value })}\n`);
    switch (cmd.execute) {
      case 'guest-info':
        reply({ version: `7.2${'.9'.repeat(5000)}`, supported_commands: [] });
        return;
      case 'guest-get-osinfo':
        reply({ id: huge, 'pretty-name': huge, 'kernel-release': huge.slice(0, 1000) });
        return;
      case 'guest-get-host-name':
        reply({ 'host-name': huge });
        return;
      case 'guest-network-get-interfaces':
        reply(
          Array.from({ length: 400 }, (_, i) => ({
            name: `eth${i}${'n'.repeat(100)}`,
            'hardware-address': `52:54:00:00:00:${(i % 256).toString(16).padStart(2, '0')}`,
            'ip-addresses': Array.from({ length: 25 }, (_, j) => ({ 'ip-address-type': 'ipv4', 'ip-address': `10.${i % 256}.${j}.1`, prefix: 24 })),
          })),
        );
        return;
      default:
        reply({});
    }
  });
  const monitor = new GuestAgentMonitor({ path: agentPath, logger, pollIntervalMs: 60_000, retryIntervalMs: 100 });
  const stop = new AbortController();
  const connected = new Promise<void>((resolve) => monitor.on('change', (s) => s.connected && resolve()));
  const running = monitor.run(stop.signal);
  await connected;
  const guest = guestStatus(monitor.snapshot);
  const agent = guestAgentStatus(monitor.snapshot);
  stop.abort();
  await running;
  const L = GUEST_REPORT_LIMITS;
  assert.equal(guest.interfaces.length, L.interfaces);
  for (const iface of guest.interfaces) {
    assert.equal(iface.ipAddresses.length, L.addressesPerInterface);
    assert.ok(iface.name.length <= L.shortString);
  }
  assert.equal(guest.hostName?.length, L.string);
  assert.equal(guest.os?.prettyName?.length, L.string);
  assert.equal(guest.os?.kernelRelease?.length, L.string);
  assert.ok((agent.version?.length ?? 0) <= L.shortString);
  const bytes = Buffer.byteLength(JSON.stringify({ guest, agent }));
  assert.ok(bytes < 64 * 1024, `the guest section is ${bytes} bytes`);
});

void test('an agent that floods instead of answering the sync fails the connect at once, not at the sync timeout', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-qga-flood-'));
  const sockPath = path.join(dir, 'qga.sock');
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    void endlessLine(sock, 64 * 1024 * 1024);
  });
  await new Promise<void>((resolve) => server.listen(sockPath, resolve));
  t.after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  const client = new GuestAgentClient({ path: sockPath, logger, maxLineBytes: 64 * 1024, syncTimeoutMs: 20_000 });
  const started = Date.now();
  await assert.rejects(client.connect(), (err: unknown) => err instanceof AgentSyncError && err.cause instanceof AgentLineTooLongError);
  assert.ok(Date.now() - started < 5000, `the sync took ${Date.now() - started} ms to give up`);
  assert.equal(client.connected, false);
});


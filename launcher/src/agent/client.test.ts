import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { GuestAgentClient } from './client.ts';
import { AgentCommandError, AgentDisconnectedError, AgentSyncError, AgentTimeoutError } from './errors.ts';
import { GuestAgentMonitor } from './monitor.ts';

const logger = pino({ level: 'silent' });

interface Cmd {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** A fake agent: on connect writes `junk` (stale output), then answers each command via `answer`. */
async function fakeAgent(
  t: { after: (fn: () => Promise<void>) => void },
  answer: (cmd: Cmd, sock: net.Socket) => void,
  junk = '',
): Promise<{ path: string; commands: string[] }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-qga-'));
  const sockPath = path.join(dir, 'qga.sock');
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    if (junk !== '') sock.write(junk);
    let rest = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      rest = Buffer.from(Buffer.concat([rest, chunk]).filter((b) => b !== 0xff));
      let nl = rest.indexOf(0x0a);
      while (nl >= 0) {
        const cmd = JSON.parse(rest.subarray(0, nl).toString()) as Cmd;
        commands.push(cmd.execute);
        answer(cmd, sock);
        rest = rest.subarray(nl + 1);
        nl = rest.indexOf(0x0a);
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
  return { path: sockPath, commands };
}

function send(sock: net.Socket, value: unknown): void {
  sock.write(`${JSON.stringify(value)}\n`);
}

const agent = (cmd: Cmd, sock: net.Socket): void => {
  switch (cmd.execute) {
    case 'guest-sync-delimited':
      // a stale answer of an earlier session first, then ours behind the delimiter
      send(sock, { return: 42 });
      sock.write(Buffer.from([0xff]));
      send(sock, { return: cmd.arguments?.id });
      return;
    case 'guest-info':
      send(sock, { return: { version: '7.2.22', supported_commands: [{ name: 'guest-ping', enabled: true, 'success-response': true }] } });
      return;
    case 'guest-get-osinfo':
      send(sock, { return: { id: 'debian', name: 'Debian GNU/Linux', 'pretty-name': 'Debian GNU/Linux 12 (bookworm)', 'version-id': '12' } });
      return;
    case 'guest-get-host-name':
      send(sock, { return: { 'host-name': 'guest' } });
      return;
    case 'guest-network-get-interfaces':
      send(sock, { return: [{ name: 'eth0', 'hardware-address': '52:54:00:12:34:56', 'ip-addresses': [{ 'ip-address-type': 'ipv4', 'ip-address': '10.0.2.15', prefix: 24 }] }] });
      return;
    case 'guest-exec':
      send(sock, { return: { pid: 77 } });
      return;
    case 'guest-exec-status':
      send(sock, { return: { exited: true, exitcode: 0, 'out-data': Buffer.from('hi\n').toString('base64') } });
      return;
    case 'guest-shutdown':
    case 'guest-hang':
      return;
    case 'guest-fsfreeze-freeze':
      send(sock, { error: { class: 'GenericError', desc: 'no filesystems' } });
      return;
    default:
      send(sock, { return: {} });
  }
};

void test('synchronises past stale output and runs commands', async (t) => {
  const fake = await fakeAgent(t, agent, '{"return": {"leftover": true}}\n{"retu');
  const client = new GuestAgentClient({ path: fake.path, logger });
  t.after(() => client.close());
  await client.connect();
  assert.equal(fake.commands[0], 'guest-sync-delimited');
  assert.equal((await client.osInfo())['version-id'], '12');
  const [ping, ifaces] = await Promise.all([client.ping(), client.networkInterfaces()]);
  assert.deepEqual(ping, {});
  assert.equal(ifaces[0]?.['ip-addresses']?.[0]?.['ip-address'], '10.0.2.15');
  assert.equal(await client.exec({ path: '/bin/dirty', args: ['64'] }), 77);
  const status = await client.execStatus(77);
  assert.equal(Buffer.from(status['out-data'] ?? '', 'base64').toString(), 'hi\n');
});

void test('an agent error reply is an AgentCommandError', async (t) => {
  const fake = await fakeAgent(t, agent);
  const client = new GuestAgentClient({ path: fake.path, logger });
  t.after(() => client.close());
  await client.connect();
  await assert.rejects(client.fsfreezeFreeze(), (err: unknown) => err instanceof AgentCommandError && err.errorClass === 'GenericError');
});

void test('guest-shutdown resolves on silence', async (t) => {
  const fake = await fakeAgent(t, agent);
  const client = new GuestAgentClient({ path: fake.path, logger });
  t.after(() => client.close());
  await client.connect();
  await client.shutdown('powerdown', 100);
  assert.equal(fake.commands.at(-1), 'guest-shutdown');
});

void test('a timed-out command closes the channel', async (t) => {
  const fake = await fakeAgent(t, agent);
  const client = new GuestAgentClient({ path: fake.path, logger });
  t.after(() => client.close());
  await client.connect();
  await assert.rejects(client.execute('guest-hang', undefined, (await import('zod')).z.unknown(), 50), AgentTimeoutError);
  assert.equal(client.connected, false);
  await assert.rejects(client.ping(), AgentDisconnectedError);
});

void test('no agent behind the socket is an AgentSyncError', async (t) => {
  const fake = await fakeAgent(t, () => undefined);
  const client = new GuestAgentClient({ path: fake.path, logger, syncTimeoutMs: 100 });
  await assert.rejects(client.connect(), AgentSyncError);
  assert.equal(client.connected, false);
});

/** A running monitor on a fake agent that answers while `agentAlive` says so; stopped after the test. */
async function runningMonitor(t: TestContext, agentAlive: () => boolean): Promise<GuestAgentMonitor> {
  const fake = await fakeAgent(t, (cmd, sock) => {
    if (agentAlive()) agent(cmd, sock);
  });
  const monitor = new GuestAgentMonitor({ path: fake.path, logger, pollIntervalMs: 30, retryIntervalMs: 30, syncTimeoutMs: 100, commandTimeoutMs: 100 });
  const ac = new AbortController();
  const running = monitor.run(ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  return monitor;
}

void test('the monitor connects, reports the guest and notices the agent leaving', async (t) => {
  let alive = true;
  const monitor = await runningMonitor(t, () => alive);
  const connected = await new Promise<boolean>((resolve) => monitor.once('change', (s) => resolve(s.connected)));
  assert.equal(connected, true);
  assert.equal(monitor.snapshot.osInfo?.['pretty-name'], 'Debian GNU/Linux 12 (bookworm)');
  assert.equal(monitor.snapshot.interfaces?.[0]?.name, 'eth0');
  alive = false;
  const gone = await new Promise<boolean>((resolve) => monitor.once('change', (s) => resolve(s.connected)));
  assert.equal(gone, false);
  alive = true;
  const back = await new Promise<boolean>((resolve) => monitor.once('change', (s) => resolve(s.connected)));
  assert.equal(back, true);
});

void test('a held monitor (paused guest) does not report the agent gone', async (t) => {
  let alive = true;
  const monitor = await runningMonitor(t, () => alive);
  await new Promise<void>((resolve) => monitor.once('change', () => resolve()));
  assert.equal(monitor.snapshot.connected, true);
  monitor.hold(true);
  await new Promise((resolve) => setTimeout(resolve, 100)); // let an in-flight poll finish
  alive = false;
  const changes: boolean[] = [];
  monitor.on('change', (s) => changes.push(s.connected));
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.deepEqual(changes, []);
  monitor.hold(false);
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.deepEqual(changes, [false]);
});

void test('the monitor reports a host name the guest sets after the agent connected (cloud-init)', async (t) => {
  let hostName = 'debian';
  const fake = await fakeAgent(t, (cmd, sock) => {
    if (cmd.execute === 'guest-get-host-name') send(sock, { return: { 'host-name': hostName } });
    else agent(cmd, sock);
  });
  const monitor = new GuestAgentMonitor({ path: fake.path, logger, pollIntervalMs: 30, retryIntervalMs: 30, syncTimeoutMs: 100, commandTimeoutMs: 100 });
  const ac = new AbortController();
  const running = monitor.run(ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  await new Promise<void>((resolve) => monitor.once('change', () => resolve()));
  assert.equal(monitor.snapshot.hostName, 'debian');
  hostName = 'web-1';
  const next = await new Promise<string | undefined>((resolve) => monitor.once('change', (s) => resolve(s.hostName)));
  assert.equal(next, 'web-1');
  assert.equal(monitor.snapshot.connected, true);
});

void test('wake() (the guest opened the agent port) connects at once instead of at the next retry', async (t) => {
  let alive = false;
  const fake = await fakeAgent(t, (cmd, sock) => {
    if (alive) agent(cmd, sock);
  });
  // A retry a minute away and a synchronisation that waits 30 s: without wake() nothing connects within this test.
  const monitor = new GuestAgentMonitor({ path: fake.path, logger, retryIntervalMs: 60_000, pollIntervalMs: 60_000, syncTimeoutMs: 30_000, commandTimeoutMs: 1000 });
  const ac = new AbortController();
  const running = monitor.run(ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  await new Promise((resolve) => setTimeout(resolve, 200)); // the first attempt's sync is unanswered
  assert.equal(monitor.snapshot.connected, false);
  alive = true;
  const started = Date.now();
  const connected = new Promise<boolean>((resolve) => monitor.once('change', (s) => resolve(s.connected)));
  monitor.wake();
  assert.equal(await connected, true);
  assert.ok(Date.now() - started < 5000, `connected ${Date.now() - started} ms after wake()`);
});

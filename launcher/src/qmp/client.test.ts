import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { QmpClient } from './client.ts';
import {
  QmpDisconnectedError,
  QmpExecuteError,
  QmpGreetingError,
  QmpNegotiationError,
  QmpTimeoutError,
} from './errors.ts';
import { queryStatusSchema } from './messages.ts';

const logger = pino({ level: 'silent' });
const greeting = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'test' }, capabilities: ['oob'] } };

interface Command {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: string;
}

type Handler = (cmd: Command, sock: net.Socket) => void;

/** A fake QMP server on a unix socket: sends `hello` on connect, then hands each command to `handler`. */
async function fakeServer(
  t: { after: (fn: () => Promise<void>) => void },
  handler: Handler,
  hello: string = JSON.stringify(greeting),
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-qmp-'));
  const sockPath = path.join(dir, 'qmp.sock');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.write(`${hello}\r\n`);
    let rest = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      rest += chunk;
      let nl = rest.indexOf('\n');
      while (nl >= 0) {
        handler(JSON.parse(rest.slice(0, nl)) as Command, sock);
        rest = rest.slice(nl + 1);
        nl = rest.indexOf('\n');
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

function reply(sock: net.Socket, message: unknown): void {
  sock.write(`${JSON.stringify(message)}\r\n`);
}

const standard: Handler = (cmd, sock) => {
  switch (cmd.execute) {
    case 'qmp_capabilities':
      reply(sock, { return: {}, id: cmd.id });
      return;
    case 'query-status':
      reply(sock, { event: 'RESUME', timestamp: { seconds: 1, microseconds: 2 } });
      reply(sock, { return: { running: true, singlestep: false, status: 'running' }, id: cmd.id });
      return;
    case 'bogus':
      reply(sock, { error: { class: 'CommandNotFound', desc: 'The command bogus has not been found' }, id: cmd.id });
      return;
    case 'slow':
      return;
    case 'die':
      sock.destroy();
      return;
    default:
      reply(sock, { return: {}, id: cmd.id });
  }
};

void test('negotiates, runs commands by id and routes events apart from replies', async (t) => {
  const sockPath = await fakeServer(t, standard);
  const client = await QmpClient.connect({ path: sockPath, logger });
  t.after(() => client.close());
  assert.equal(client.greeting.QMP.version.qemu.major, 7);
  const events: string[] = [];
  client.on('event', (e) => events.push(e.event));
  const status = await client.execute('query-status', undefined, queryStatusSchema);
  assert.deepEqual(status, { running: true, singlestep: false, status: 'running' });
  assert.deepEqual(events, ['RESUME']);
});

void test('answers interleaved concurrent commands to the right caller', async (t) => {
  const held: Command[] = [];
  const sockPath = await fakeServer(t, (cmd, sock) => {
    if (cmd.execute === 'qmp_capabilities') {
      reply(sock, { return: {}, id: cmd.id });
      return;
    }
    held.push(cmd);
    if (held.length === 2) {
      // answer in reverse order
      for (const c of [...held].reverse()) reply(sock, { return: { name: c.execute }, id: c.id });
    }
  });
  const client = await QmpClient.connect({ path: sockPath, logger });
  t.after(() => client.close());
  const schema = z.object({ name: z.string() });
  const [a, b] = await Promise.all([client.execute('first', undefined, schema), client.execute('second', undefined, schema)]);
  assert.equal(a.name, 'first');
  assert.equal(b.name, 'second');
});

void test('an error reply becomes QmpExecuteError with the class and command', async (t) => {
  const sockPath = await fakeServer(t, standard);
  const client = await QmpClient.connect({ path: sockPath, logger });
  t.after(() => client.close());
  await assert.rejects(client.execute('bogus', { x: 1 }, z.unknown()), (err: unknown) => {
    assert.ok(err instanceof QmpExecuteError);
    assert.equal(err.errorClass, 'CommandNotFound');
    assert.equal(err.command, 'bogus');
    assert.deepEqual(err.arguments, { x: 1 });
    return true;
  });
});

void test('a command without reply times out and the session stays usable', async (t) => {
  const sockPath = await fakeServer(t, standard);
  const client = await QmpClient.connect({ path: sockPath, logger });
  t.after(() => client.close());
  await assert.rejects(client.execute('slow', undefined, z.unknown(), { timeoutMs: 50 }), QmpTimeoutError);
  await client.execute('stop', undefined, z.object({}));
});

void test('disconnect fails every pending call and every later call', async (t) => {
  const sockPath = await fakeServer(t, standard);
  const client = await QmpClient.connect({ path: sockPath, logger });
  const disconnected = new Promise((resolve) => client.once('disconnect', resolve));
  const pending = client.execute('slow', undefined, z.unknown());
  const killer = client.execute('die', undefined, z.unknown());
  await assert.rejects(pending, QmpDisconnectedError);
  await assert.rejects(killer, QmpDisconnectedError);
  await disconnected;
  assert.equal(client.connected, false);
  await assert.rejects(client.execute('query-status', undefined, queryStatusSchema), QmpDisconnectedError);
});

void test('the event iterator yields events and ends on disconnect', async (t) => {
  const sockPath = await fakeServer(t, (cmd, sock) => {
    if (cmd.execute === 'qmp_capabilities') {
      reply(sock, { return: {}, id: cmd.id });
      return;
    }
    reply(sock, { return: {}, id: cmd.id });
    reply(sock, { event: 'STOP', timestamp: { seconds: 1, microseconds: 0 } });
    reply(sock, { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: { seconds: 2, microseconds: 0 } });
    setTimeout(() => sock.destroy(), 20);
  });
  const client = await QmpClient.connect({ path: sockPath, logger });
  const seen: string[] = [];
  const iterating = (async () => {
    for await (const e of client.events()) seen.push(e.event);
  })();
  await client.execute('go', undefined, z.object({}));
  await iterating;
  assert.deepEqual(seen, ['STOP', 'SHUTDOWN']);
});

void test('a non-QMP greeting is a QmpGreetingError', async (t) => {
  const sockPath = await fakeServer(t, standard, JSON.stringify({ hello: 'world' }));
  await assert.rejects(QmpClient.connect({ path: sockPath, logger }), QmpGreetingError);
});

void test('no greeting in time is a QmpGreetingError', async (t) => {
  const sockPath = await fakeServer(t, standard, '');
  await assert.rejects(QmpClient.connect({ path: sockPath, logger, handshakeTimeoutMs: 100 }), QmpGreetingError);
});

void test('a refused qmp_capabilities is a QmpNegotiationError', async (t) => {
  const sockPath = await fakeServer(t, (cmd, sock) => {
    reply(sock, { error: { class: 'CommandNotFound', desc: 'nope' }, id: cmd.id });
  });
  await assert.rejects(QmpClient.connect({ path: sockPath, logger }), QmpNegotiationError);
});

void test('malformed lines are dropped without breaking the session', async (t) => {
  const sockPath = await fakeServer(t, (cmd, sock) => {
    if (cmd.execute !== 'qmp_capabilities') sock.write('not json\r\n{"weird":1}\r\n');
    reply(sock, { return: {}, id: cmd.id });
  });
  const client = await QmpClient.connect({ path: sockPath, logger });
  t.after(() => client.close());
  await client.execute('cont', undefined, z.object({}));
});

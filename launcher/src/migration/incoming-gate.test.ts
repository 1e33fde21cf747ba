// The target's migration gate with real sockets on loopback: a unix socket server
// stands in for QEMU's `migrate-incoming unix:` listener and records what reaches it
// (real QEMU behind the gate: test/migration/migration-tls.test.ts).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { pino } from 'pino';
import type { z } from 'zod';
import { MIGRATION_TLS_HOSTNAME } from '../api/migration.ts';
import { IncomingGate, IncomingGateError } from './incoming-gate.ts';
import type { MigrationQmp, MigrationQmpEvent } from './qmp-port.ts';
import { IncomingMigration } from './target.ts';
import { foreignCredentials, sampleCredentials, sampleServerTls } from './tls-sample-credentials.ts';

const silent = pino({ level: 'silent' });
const root = mkdtempSync(path.join(tmpdir(), 'kv-incoming-gate-'));
after(() => rmSync(root, { recursive: true, force: true }));
let sockets = 0;

/** A stand-in for QEMU's unix migration listener: collects every byte of every connection. */
async function fakeQemu(): Promise<{ socket: string; connections: () => number; received: () => Buffer; close: () => void }> {
  const socket = path.join(root, `qemu-${++sockets}.sock`);
  const chunks: Buffer[] = [];
  let connections = 0;
  const server = net.createServer((conn) => {
    connections++;
    conn.on('data', (c: Buffer) => chunks.push(c));
    conn.on('error', () => undefined);
  });
  server.listen(socket);
  await once(server, 'listening');
  return { socket, connections: () => connections, received: () => Buffer.concat(chunks), close: () => server.close() };
}

interface ClientOptions {
  readonly cert?: string;
  readonly key?: string;
  readonly send?: Buffer;
}

/** A TLS client trusting the sample CA; resolves with whether it got through and how it ended. */
async function client(port: number, options: ClientOptions): Promise<{ secured: boolean; closed: boolean }> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: sampleCredentials.caCert,
    servername: MIGRATION_TLS_HOSTNAME,
    ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
  });
  let secured = false;
  socket.on('secureConnect', () => {
    secured = true;
    if (options.send !== undefined) socket.write(options.send);
  });
  const closed = await Promise.race([
    new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      socket.once('error', () => resolve(true));
    }),
    sleep(1500, false),
  ]);
  socket.destroy();
  return { secured, closed };
}

void describe('IncomingGate', () => {
  void it('relays the first verified client that sends data, and nothing from anyone else', async (t) => {
    const qemu = await fakeQemu();
    t.after(() => qemu.close());
    const gate = await IncomingGate.open({ host: '127.0.0.1', port: 0, tls: sampleServerTls, qemuSocket: qemu.socket, logger: silent, handshakeTimeoutMs: 1000 });
    t.after(() => gate.close());

    // An idle plain TCP connection stays open meanwhile: it must not hold anything up.
    const idle = net.connect({ host: '127.0.0.1', port: gate.port });
    await once(idle, 'connect');
    t.after(() => idle.destroy());

    const plain = net.connect({ host: '127.0.0.1', port: gate.port });
    plain.on('error', () => undefined);
    plain.write(Buffer.from('QEVM\0\0\0\x03 garbage'));
    await once(plain, 'close');

    const anonymous = await client(gate.port, { send: Buffer.from('QEVM anonymous') });
    assert.ok(anonymous.closed, 'a client without a certificate is dropped');
    const foreign = await client(gate.port, { ...foreignCredentials.client, send: Buffer.from('QEVM foreign') });
    assert.ok(foreign.closed, "a client with another CA's certificate is dropped");
    const misused = await client(gate.port, { ...sampleCredentials.server, send: Buffer.from('QEVM server cert') });
    assert.ok(misused.closed, 'the server certificate is no client certificate');
    assert.equal(qemu.connections(), 0, 'QEMU has seen nothing yet');

    const real = tls.connect({
      host: '127.0.0.1',
      port: gate.port,
      ca: sampleCredentials.caCert,
      ...sampleCredentials.client,
      servername: MIGRATION_TLS_HOSTNAME,
    });
    await once(real, 'secureConnect');
    real.write(Buffer.from('QEVM the real stream'));
    for (let i = 0; i < 50 && qemu.received().length < 20; i++) await sleep(20);
    assert.equal(qemu.received().toString(), 'QEVM the real stream');
    assert.equal(qemu.connections(), 1);

    const late = await client(gate.port, { ...sampleCredentials.client, send: Buffer.from('QEVM second') });
    assert.ok(late.closed, 'nobody else gets in once a stream is admitted');
    assert.equal(qemu.connections(), 1);
    assert.ok(gate.refused >= 4, `refused ${gate.refused}`);
    real.destroy();
  });

  void it('drops a verified client that sends nothing, and a plain one that stalls, after the limit', async (t) => {
    const qemu = await fakeQemu();
    t.after(() => qemu.close());
    const gate = await IncomingGate.open({ host: '127.0.0.1', port: 0, tls: sampleServerTls, qemuSocket: qemu.socket, logger: silent, handshakeTimeoutMs: 300 });
    t.after(() => gate.close());
    const silentClient = await client(gate.port, { ...sampleCredentials.client });
    assert.deepEqual(silentClient, { secured: true, closed: true });
    const stalled = net.connect({ host: '127.0.0.1', port: gate.port });
    stalled.on('error', () => undefined);
    const [, closedIn] = await Promise.all([once(stalled, 'close'), sleep(0, Date.now())]);
    assert.ok(Date.now() - closedIn < 1500);
    assert.equal(qemu.connections(), 0);
    assert.equal(gate.refused, 2);
  });

  void it('names the address it could not listen on', async () => {
    await assert.rejects(
      IncomingGate.open({ host: '192.0.2.1', port: 0, tls: sampleServerTls, qemuSocket: '/nonexistent', logger: silent }),
      (err) => err instanceof IncomingGateError && /192\.0\.2\.1:0/.test(err.message),
    );
  });
});

/** Enough QMP for the target: records commands, lets the test send events. */
class TargetQmp implements MigrationQmp {
  readonly commands: string[] = [];
  uri: string | undefined;
  #listeners = new Set<(e: MigrationQmpEvent) => void>();

  execute<S extends z.ZodType>(command: string, args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
    this.commands.push(command);
    if (command === 'migrate-incoming') this.uri = String(args?.['uri']);
    return Promise.resolve(schema.parse({}));
  }

  emit(event: string, data: Record<string, unknown>): void {
    for (const l of this.#listeners) l({ event, data, timestamp: { seconds: 1000, microseconds: 0 } });
  }

  on(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.add(listener);
  }

  off(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.delete(listener);
  }
}

void describe('IncomingMigration behind the gate', () => {
  void it('closes the gate when the incoming migration ends, and removes the socket directory', async () => {
    for (const outcome of ['completed', 'failed'] as const) {
      const qmp = new TargetQmp();
      const tlsDir = path.join(root, `target-${outcome}`);
      const incoming = new IncomingMigration({ qmp, logger: silent, host: '127.0.0.1', port: 0, postCopy: false, tls: sampleServerTls, tlsDir });
      const status = await incoming.listen();
      assert.match(qmp.uri ?? '', /^unix:/);
      const probe = net.connect({ host: '127.0.0.1', port: status.port });
      await once(probe, 'connect');
      probe.destroy();
      qmp.emit('MIGRATION', { status: outcome });
      await incoming.done();
      await sleep(50);
      const after = net.connect({ host: '127.0.0.1', port: status.port });
      const [err] = (await once(after, 'error')) as [NodeJS.ErrnoException];
      assert.equal(err.code, 'ECONNREFUSED', `${outcome}: the gate no longer listens`);
      assert.deepEqual(readdirSync(tlsDir), [], `${outcome}: the socket directory is gone`);
    }
  });
});

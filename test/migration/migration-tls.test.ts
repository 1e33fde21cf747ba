// The migration stream is TLS with credentials minted for one migration, between two
// real launchers (the target in another network namespace), against real QEMU:
// strangers that connect to the target's migration port from another namespace —
// raw garbage, a QEMU migration stream header, TLS without a certificate, TLS with a
// certificate from another CA, an idle connection held open — achieve nothing and
// do not disturb the target (its gate drops them; QEMU never sees them); a source
// holding another migration's credentials, or expecting another name, cannot migrate
// and keeps running; a listener posing as the target (plain TCP, TLS with a
// certificate from another CA, or without the expected name) receives not one byte of
// the migration stream. Then the real migration succeeds, the counter continuing with
// the same boot id, and no PEM file or socket is left in either state dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { MIGRATION_TLS_HOSTNAME, type IncomingMigrationStatus, type MigrationTlsClientCredentialsInput } from '../../launcher/src/api/index.ts';
import {
  assertCounterContinues,
  migrationOutcome,
  mintMigrationTls,
  waitForCounter,
  waitForStatus,
  type LauncherProcess,
} from '../support/launcher-process.ts';
import { peerTarget, runningSource } from './migration-pair.ts';

const BOOT_TIMEOUT_MS = 180_000;
/** QEMU_VM_FILE_MAGIC and QEMU_VM_FILE_VERSION: how every QEMU migration stream begins. */
const QEMU_STREAM_HEADER = Buffer.from([0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03]);

/** What became of a stranger's connection: closed by the peer (and how), or still open when we gave up. */
interface StrangerOutcome {
  readonly closedByPeer: boolean;
  readonly error: string | undefined;
  readonly secured: boolean;
  readonly received: number;
}

/** Connects over plain TCP, sends `payload`, and waits up to `waitMs` for the peer to drop the connection. */
async function plainStranger(host: string, port: number, payload: Buffer, waitMs = 5000): Promise<StrangerOutcome> {
  const socket = net.connect({ host, port });
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  await once(socket, 'connect');
  socket.write(payload);
  const closed = new Promise<string | undefined>((resolve) => {
    socket.once('error', (err: Error) => resolve(err.message));
    socket.once('close', () => resolve(undefined));
  });
  const outcome = await Promise.race([closed.then((error) => ({ closedByPeer: true, error })), sleep(waitMs, { closedByPeer: false, error: undefined })]);
  socket.destroy();
  return { ...outcome, secured: false, received };
}

/** A TLS client that trusts the migration's CA, with or without a client certificate; sends a QEMU header once secured. */
async function tlsStranger(host: string, port: number, options: { caCert: string; cert?: string; key?: string }, waitMs = 5000): Promise<StrangerOutcome> {
  let secured = false;
  let received = 0;
  const socket = tls.connect({
    host,
    port,
    ca: options.caCert,
    ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
    servername: MIGRATION_TLS_HOSTNAME,
  });
  socket.on('secureConnect', () => {
    secured = socket.authorized;
    socket.write(QEMU_STREAM_HEADER);
  });
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  const closed = new Promise<string | undefined>((resolve) => {
    socket.once('error', (err: Error) => resolve(err.message));
    socket.once('close', () => resolve(undefined));
  });
  const outcome = await Promise.race([closed.then((error) => ({ closedByPeer: true, error })), sleep(waitMs, { closedByPeer: false, error: undefined })]);
  socket.destroy();
  return { ...outcome, secured, received };
}

/**
 * The target waits, untouched: its incoming side listens on the same port, its launcher
 * and QEMU wait for the migration, and the gate has dropped at least `refusedAtLeast`
 * connections so far. (That QEMU's main loop was never stalled shows when the real
 * migration succeeds with an idle stranger connected.)
 */
async function assertTargetUndisturbed(target: LauncherProcess, listening: IncomingMigrationStatus, what: string, refusedAtLeast = 0): Promise<void> {
  const incoming = await target.migration.incoming();
  assert.equal(incoming.phase, 'Listening', `${what}: incoming ${JSON.stringify(incoming)}`);
  assert.equal(incoming.port, listening.port);
  assert.ok((incoming.refusedConnections ?? 0) >= refusedAtLeast, `${what}: ${incoming.refusedConnections} connections refused, expected ${refusedAtLeast}`);
  const status = await target.client.status();
  assert.equal(status.phase, 'WaitingForMigration', `${what}: target ${status.phase}`);
  assert.equal(status.qemu.runState, 'inmigrate', `${what}: target QEMU ${status.qemu.runState}`);
  assert.equal(target.process.exitCode, null, `${what}: the target launcher exited`);
}

/** Starts the source (once it runs again after any earlier attempt) towards `target` with `tls`; returns the outcome. */
async function migrateWith(
  source: LauncherProcess,
  target: { host: string; port: number; launcherUrl?: string },
  tlsCreds: MigrationTlsClientCredentialsInput,
  migrationId: string,
): Promise<Awaited<ReturnType<typeof migrationOutcome>>> {
  await waitForStatus(source, (s) => s.phase === 'Running', 30_000, 'Running before migrating');
  await source.migration.start({ migrationId, target, tls: tlsCreds });
  return migrationOutcome(source, 120_000);
}

/** No PEM file of any migration is left in a launcher's state dir. */
async function assertNoTlsFiles(launcher: LauncherProcess): Promise<void> {
  const dir = path.join(launcher.stateDir, 'migration-tls');
  const left = await readdir(dir, { recursive: true }).catch((err: unknown) => ((err as NodeJS.ErrnoException).code === 'ENOENT' ? [] : Promise.reject(err as Error)));
  assert.deepEqual(left, [], `${launcher.name}: files left in ${dir}`);
}

void test('migration over TLS: strangers and impostors achieve nothing, the real migration goes through', { timeout: 900_000 }, async (t) => {
  const run = await runningSource(t, { name: 'tls-source', bootTimeoutMs: BOOT_TIMEOUT_MS, counters: 5 });
  const { peer, source, bootId } = run;
  const target = await peerTarget(t, run, 'tls-target');
  await waitForStatus(target, (s) => s.phase === 'WaitingForMigration', 60_000, 'WaitingForMigration');
  const credentials = await mintMigrationTls(peer.address, 'tls-migration');
  const foreign = await mintMigrationTls(peer.address, 'another-migration');
  const listening = await target.migration.prepareIncoming({ tls: credentials.target });
  assert.equal(listening.host, peer.address);
  const targetAddress = { host: listening.host, port: listening.port, launcherUrl: target.baseUrl };

  await t.test('strangers on the migration port achieve nothing and do not disturb the target', async () => {
    // Held open through all that follows: QEMU 7.2 would freeze on such a connection (ADR 0056).
    const idle = net.connect({ host: listening.host, port: listening.port });
    idle.on('error', () => undefined);
    await once(idle, 'connect');
    t.after(() => idle.destroy());

    const garbage = await plainStranger(listening.host, listening.port, randomBytes(64 * 1024));
    assert.ok(garbage.closedByPeer, 'the target drops a connection that speaks no TLS');
    await assertTargetUndisturbed(target, listening, 'after raw garbage', 1);

    const header = await plainStranger(listening.host, listening.port, Buffer.concat([QEMU_STREAM_HEADER, randomBytes(4096)]));
    assert.ok(header.closedByPeer, 'the target drops a plain QEMU migration stream');
    await assertTargetUndisturbed(target, listening, 'after a plain QEMU stream header', 2);

    const anonymous = await tlsStranger(listening.host, listening.port, { caCert: credentials.target.caCert });
    assert.ok(anonymous.closedByPeer && anonymous.received === 0, `TLS without a client certificate: ${JSON.stringify(anonymous)}`);
    await assertTargetUndisturbed(target, listening, 'after TLS without a certificate', 3);

    const otherCa = await tlsStranger(listening.host, listening.port, { caCert: credentials.target.caCert, cert: foreign.source.cert, key: foreign.source.key });
    assert.ok(otherCa.closedByPeer && otherCa.received === 0, `TLS with another CA's certificate: ${JSON.stringify(otherCa)}`);
    await assertTargetUndisturbed(target, listening, "after TLS with another CA's certificate", 4);
  });

  await t.test('a source holding another migration’s credentials cannot migrate and keeps running', async () => {
    const countBefore = (await source.counters()).length;
    const impostor = await migrateWith(source, targetAddress, foreign.source, 'wrong-ca');
    assert.equal(impostor.result.phase, 'Failed', JSON.stringify(impostor.result));
    assert.equal(impostor.result.sourceRunning, true);
    assert.equal(impostor.result.transferredBytes, 0);
    await assertTargetUndisturbed(target, listening, "after a source with another migration's credentials");

    // This migration's own client certificate, but told to expect another name: QEMU
    // drops the connection after the handshake, before a byte of the stream.
    const misnamed = await migrateWith(source, targetAddress, { ...credentials.source, hostname: 'other.keyvirt.internal' }, 'wrong-name');
    assert.equal(misnamed.result.phase, 'Failed', JSON.stringify(misnamed.result));
    assert.equal(misnamed.result.sourceRunning, true);
    await assertTargetUndisturbed(target, listening, 'after a source expecting another name');

    const status = await waitForStatus(source, (s) => s.phase === 'Running', 30_000, 'Running after the refused migrations');
    assert.equal(status.qemu.runState, 'running');
    assertCounterContinues(await waitForCounter(source, countBefore + 5, 60_000), bootId, 'source after the refused migrations');
    await assertNoTlsFiles(source);
  });

  await t.test('a listener posing as the target receives not one byte of the migration stream', async () => {
    const firstBytes: Buffer[] = [];
    const plain = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        firstBytes.push(chunk);
        socket.destroy();
      });
    });
    plain.listen(0, peer.rootAddress);
    await once(plain, 'listening');
    const plainPort = (plain.address() as AddressInfo).port;
    const viaPlain = await migrateWith(source, { host: peer.rootAddress, port: plainPort }, credentials.source, 'rogue-plain').finally(() => plain.close());
    assert.equal(viaPlain.result.phase, 'Failed');
    assert.equal(viaPlain.result.sourceRunning, true);
    assert.ok(firstBytes.length > 0, 'the source connected');
    assert.equal(firstBytes[0]?.[0], 0x16, 'the first byte is a TLS handshake record, not a QEMU stream');
    assert.ok(!Buffer.concat(firstBytes).includes(QEMU_STREAM_HEADER.subarray(0, 4)));

    // QEMU checks the peer's certificate and name once the TLS handshake is through and
    // sends nothing of the stream before: an impostor may see a handshake, never a byte.
    const impostor = async (server: { cert: string; key: string }, hostname: string, id: string): Promise<number> => {
      let payload = 0;
      const rogue = tls.createServer({ ...server, ca: credentials.target.caCert, requestCert: true, rejectUnauthorized: false }, (socket) => {
        socket.on('data', (chunk: Buffer) => (payload += chunk.length));
        socket.on('error', () => undefined);
      });
      rogue.on('tlsClientError', () => undefined);
      rogue.listen(0, peer.rootAddress);
      await once(rogue, 'listening');
      const port = (rogue.address() as AddressInfo).port;
      const { result } = await migrateWith(source, { host: peer.rootAddress, port }, { ...credentials.source, hostname }, id).finally(() => rogue.close());
      assert.equal(result.phase, 'Failed', `${id}: ${JSON.stringify(result)}`);
      assert.equal(result.sourceRunning, true);
      return payload;
    };
    assert.equal(await impostor(foreign.target, MIGRATION_TLS_HOSTNAME, 'rogue-tls'), 0, "an impostor with another CA's certificate receives nothing");
    // The right certificate, but the source was told to expect another name.
    assert.equal(await impostor(credentials.target, 'other.keyvirt.internal', 'wrong-name'), 0, 'a server without the expected name receives nothing');
    await waitForStatus(source, (s) => s.phase === 'Running', 30_000, 'Running after the impostors');
    await assertTargetUndisturbed(target, listening, 'after the impostors');
  });

  await t.test('the real migration succeeds over TLS while a stranger holds a connection open; the guest continues', async (st) => {
    const idle = net.connect({ host: listening.host, port: listening.port });
    idle.on('error', () => undefined);
    await once(idle, 'connect');
    st.after(() => idle.destroy());
    await assertTargetUndisturbed(target, listening, 'with an idle stranger connected');

    const { result } = await migrateWith(source, targetAddress, credentials.source, 'tls-migration');
    assert.equal(result.phase, 'Succeeded', JSON.stringify(result));
    assert.ok(result.transferredBytes > 0);
    st.diagnostic(`TLS migration (TCG): total ${result.totalTimeMs} ms, downtime ${result.downtimeMs} ms, pause ${result.guestPauseMs} ms, ${result.transferredBytes} bytes`);
    assert.equal((await source.exited).code, 0, 'the source launcher hands over and exits');

    await waitForStatus(target, (s) => s.phase === 'Running', 60_000, 'Running on the target');
    assert.equal((await target.migration.incoming()).phase, 'Succeeded');
    const sourceRecords = await source.counters();
    const targetRecords = await waitForCounter(target, 5, 60_000);
    assertCounterContinues(sourceRecords, bootId, 'source');
    assertCounterContinues(targetRecords, bootId, 'target');
    const lastOnSource = sourceRecords.at(-1)?.n ?? 0;
    const firstOnTarget = targetRecords[0]?.n ?? 0;
    assert.ok(firstOnTarget > lastOnSource && firstOnTarget <= lastOnSource + 2, `counter ${lastOnSource} on the source, ${firstOnTarget} next on the target`);
    await assertNoTlsFiles(target);
    const admitted = target.logs().filter((l) => l.msg === 'migration stream admitted');
    assert.equal(admitted.length, 1, 'exactly one stream reached the target QEMU');
    assert.equal(admitted[0]?.peer, 'KeyVirt migration source tls-migration');
    const loaded = source.logs().filter((l) => l.msg === 'migration TLS credentials loaded').length;
    const removed = source.logs().filter((l) => l.msg === 'migration TLS credentials removed').length;
    assert.ok(loaded >= 2 && removed === loaded, `source: ${loaded} credentials loaded, ${removed} removed`);
  });
});

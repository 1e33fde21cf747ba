import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import {
  MIGRATION_TLS_HOSTNAME,
  MigrationTlsClientCredentialsSchema,
  MigrationTlsServerCredentialsSchema,
  PrepareIncomingRequestSchema,
  StartMigrationRequestSchema,
} from '@keyvirt/launcher/api';
import {
  CLOCK_SKEW_ALLOWANCE_MS,
  DEFAULT_MIGRATION_CREDENTIALS_VALIDITY_MS,
  MigrationCredentialsInputError,
  mintMigrationCredentials,
  type MigrationCredentials,
  type MintMigrationCredentialsInput,
} from './tls-credentials.ts';

const NOW = new Date('2026-06-01T12:00:00.000Z');
const input: MintMigrationCredentialsInput = {
  vmNamespace: 'prod',
  vmName: 'web-1',
  migrationUid: '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  targetHost: '10.78.0.2',
  now: NOW,
};
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function keyUsage(pem: string): { usages: number; critical: boolean } {
  const ext = new x509.X509Certificate(pem).getExtension(x509.KeyUsagesExtension);
  assert.ok(ext !== null, 'key usage extension present');
  return { usages: ext.usages, critical: ext.critical };
}

function basicConstraints(pem: string): { ca: boolean; pathLength: number | undefined; critical: boolean } {
  const ext = new x509.X509Certificate(pem).getExtension(x509.BasicConstraintsExtension);
  assert.ok(ext !== null, 'basic constraints extension present');
  return { ca: ext.ca, pathLength: ext.pathLength, critical: ext.critical };
}

void describe('mintMigrationCredentials', () => {
  let minted: Promise<MigrationCredentials> | undefined;
  const creds = (): Promise<MigrationCredentials> => (minted ??= mintMigrationCredentials(input));

  it('makes a CA that can only sign leaves, valid for an hour from a little before now', async () => {
    const c = await creds();
    const ca = new X509Certificate(c.caCert);
    assert.equal(ca.ca, true);
    assert.ok(ca.verify(ca.publicKey), 'self-signed');
    assert.match(ca.subject, /CN=KeyVirt migration CA 6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b/);
    assert.deepEqual(basicConstraints(c.caCert), { ca: true, pathLength: 0, critical: true });
    assert.deepEqual(keyUsage(c.caCert), { usages: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, critical: true });
    assert.equal(ca.validFromDate.getTime(), NOW.getTime() - CLOCK_SKEW_ALLOWANCE_MS);
    assert.equal(ca.validToDate.getTime(), NOW.getTime() + DEFAULT_MIGRATION_CREDENTIALS_VALIDITY_MS);
    assert.equal(c.notAfter.getTime(), ca.validToDate.getTime());
    assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
  });

  it('signs a server certificate for the target: the migration DNS name and the pod IP, server auth only', async () => {
    const c = await creds();
    const ca = new X509Certificate(c.caCert);
    const server = new X509Certificate(c.server.cert);
    assert.equal(server.ca, false);
    assert.ok(server.checkIssued(ca) && server.verify(ca.publicKey), 'chains to the CA');
    assert.ok(server.checkPrivateKey(createPrivateKey(c.server.key)), 'matches its key');
    assert.equal(server.checkHost(MIGRATION_TLS_HOSTNAME), MIGRATION_TLS_HOSTNAME);
    assert.equal(c.tlsHostname, MIGRATION_TLS_HOSTNAME);
    assert.equal(server.checkIP('10.78.0.2'), '10.78.0.2');
    assert.equal(server.checkIP('10.78.0.6'), undefined);
    assert.equal(server.checkHost('other.keyvirt.internal'), undefined);
    assert.deepEqual(server.keyUsage, [SERVER_AUTH]);
    assert.match(server.subjectAltName ?? '', /URI:urn:keyvirt:migration:prod:web-1:6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b/);
    assert.deepEqual(basicConstraints(c.server.cert), { ca: false, pathLength: undefined, critical: true });
    assert.deepEqual(keyUsage(c.server.cert), {
      usages: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      critical: true,
    });
    assert.equal(server.validToDate.getTime(), ca.validToDate.getTime());
  });

  it('signs a client certificate for the source: client auth only, no host names', async () => {
    const c = await creds();
    const ca = new X509Certificate(c.caCert);
    const client = new X509Certificate(c.client.cert);
    assert.equal(client.ca, false);
    assert.ok(client.checkIssued(ca) && client.verify(ca.publicKey));
    assert.ok(client.checkPrivateKey(createPrivateKey(c.client.key)));
    assert.deepEqual(client.keyUsage, [CLIENT_AUTH]);
    assert.equal(client.checkHost(MIGRATION_TLS_HOSTNAME), undefined);
    assert.notEqual(client.serialNumber, new X509Certificate(c.server.cert).serialNumber);
  });

  it('mints a new CA every time: one migration’s leaves do not chain to another’s CA', async () => {
    const a = await creds();
    const b = await mintMigrationCredentials({ ...input, migrationUid: 'another-migration' });
    assert.notEqual(a.caCert, b.caCert);
    const caB = new X509Certificate(b.caCert);
    assert.equal(new X509Certificate(a.server.cert).verify(caB.publicKey), false);
    assert.equal(new X509Certificate(a.client.cert).verify(caB.publicKey), false);
  });

  it('honours validForMs, IPv6 targets, and refuses bad input naming the field', async () => {
    const short = await mintMigrationCredentials({ ...input, targetHost: 'fd00::2', validForMs: 10 * 60_000 });
    assert.equal(new X509Certificate(short.caCert).validToDate.getTime(), NOW.getTime() + 10 * 60_000);
    assert.equal(new X509Certificate(short.server.cert).checkIP('fd00::2'), 'fd00::2');
    const table: [Partial<MintMigrationCredentialsInput>, RegExp][] = [
      [{ vmNamespace: 'Prod' }, /^vmNamespace /],
      [{ vmName: 'web 1' }, /^vmName /],
      [{ migrationUid: 'a,CN=evil' }, /^migrationUid /],
      [{ targetHost: 'migration.keyvirt.internal' }, /^targetHost /],
      [{ targetHost: '10.78.0.2:49152' }, /^targetHost /],
      [{ validForMs: 0 }, /^validForMs /],
      [{ validForMs: 25 * 3600_000 }, /^validForMs /],
      [{ validForMs: 1.5 }, /^validForMs /],
    ];
    for (const [change, message] of table) {
      await assert.rejects(mintMigrationCredentials({ ...input, ...change }), (err) => err instanceof MigrationCredentialsInputError && message.test(err.message));
    }
  });

  it('fits the launcher API: the target and source requests accept the minted PEMs', async () => {
    const c = await creds();
    const prepare = PrepareIncomingRequestSchema.parse({ tls: { caCert: c.caCert, ...c.server } });
    assert.equal(prepare.tls.cert, c.server.cert);
    const start = StartMigrationRequestSchema.parse({ target: { host: '10.78.0.2', port: 49152 }, tls: { caCert: c.caCert, ...c.client } });
    assert.equal(start.tls.hostname, MIGRATION_TLS_HOSTNAME);
  });

  it('is refused by the launcher API when a leaf or key belongs to another migration, naming the field', async () => {
    const a = await creds();
    const b = await mintMigrationCredentials({ ...input, migrationUid: 'another-migration' });
    const paths = (result: { success: boolean; error?: { issues: { path: PropertyKey[] }[] } }): string[] =>
      (result.error?.issues ?? []).map((i) => i.path.join('.')).sort();
    assert.deepEqual(paths(MigrationTlsServerCredentialsSchema.safeParse({ caCert: b.caCert, ...a.server })), ['cert']);
    assert.deepEqual(paths(MigrationTlsServerCredentialsSchema.safeParse({ caCert: a.caCert, cert: a.server.cert, key: b.server.key })), ['key']);
    assert.deepEqual(paths(MigrationTlsClientCredentialsSchema.safeParse({ caCert: a.server.cert, ...a.client })), ['caCert', 'cert']);
    assert.deepEqual(paths(MigrationTlsClientCredentialsSchema.safeParse({ caCert: a.caCert, cert: a.caCert, key: a.client.key })), ['cert', 'key']);
  });
});

void describe('minted credentials in a real TLS handshake (loopback)', () => {
  interface Outcome {
    readonly clientError: string | undefined;
    readonly serverSawAuthorized: boolean;
  }

  async function handshake(server: MigrationCredentials, client: { caCert: string; cert?: string; key?: string }, servername: string): Promise<Outcome> {
    let serverSawAuthorized = false;
    const srv = tls.createServer(
      { ca: server.caCert, cert: server.server.cert, key: server.server.key, requestCert: true, rejectUnauthorized: true },
      (socket) => {
        serverSawAuthorized = socket.authorized;
        socket.end('ok');
      },
    );
    srv.on('tlsClientError', () => undefined);
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    try {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        ca: client.caCert,
        ...(client.cert === undefined ? {} : { cert: client.cert, key: client.key }),
        servername,
        checkServerIdentity: (host, cert) => tls.checkServerIdentity(servername, cert),
      });
      const clientError = await new Promise<string | undefined>((resolve) => {
        socket.once('error', (err: Error) => resolve(err.message));
        socket.once('data', () => resolve(undefined));
        socket.once('end', () => resolve('closed without data'));
      });
      socket.destroy();
      return { clientError, serverSawAuthorized };
    } finally {
      srv.close();
    }
  }

  it('lets the source and target of one migration talk, and nobody else', async () => {
    const a = await mintMigrationCredentials({ ...input, now: new Date() });
    const b = await mintMigrationCredentials({ ...input, migrationUid: 'another-migration', now: new Date() });
    const good = await handshake(a, { caCert: a.caCert, ...a.client }, MIGRATION_TLS_HOSTNAME);
    assert.deepEqual(good, { clientError: undefined, serverSawAuthorized: true });
    // A client certificate from another migration's CA, and no client certificate at all.
    assert.notEqual((await handshake(a, { caCert: a.caCert, ...b.client }, MIGRATION_TLS_HOSTNAME)).clientError, undefined);
    assert.notEqual((await handshake(a, { caCert: a.caCert }, MIGRATION_TLS_HOSTNAME)).clientError, undefined);
    // A source that trusts another migration's CA refuses this target; so does one expecting another name.
    assert.match((await handshake(a, { caCert: b.caCert, ...b.client }, MIGRATION_TLS_HOSTNAME)).clientError ?? '', /certificate/i);
    assert.match((await handshake(a, { caCert: a.caCert, ...a.client }, 'other.keyvirt.internal')).clientError ?? '', /altnames|Hostname/i);
  });
});

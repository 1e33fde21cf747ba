// The source's TLS credentials in QEMU against a recording QMP peer (QEMU itself loads
// them in test/migration/migration-tls.test.ts): what lies on disk while QEMU reads
// it, what is left afterwards, when the object leaves QEMU; and the API's checks.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { z } from 'zod';
import { MigrationTlsServerCredentialsSchema, PrepareIncomingRequestSchema } from '../api/migration.ts';
import type { MigrationQmp, MigrationQmpEvent } from './qmp-port.ts';
import { MigrationTlsCredentials, MigrationTlsError, tlsFileNames } from './tls.ts';
import { foreignCredentials, sampleServerTls } from './tls-sample-credentials.ts';

const silent = pino({ level: 'silent' });
const root = mkdtempSync(path.join(tmpdir(), 'kv-migration-tls-'));
after(() => rmSync(root, { recursive: true, force: true }));

interface SeenFile {
  readonly name: string;
  readonly mode: number;
  readonly text: string;
}

/** Records commands; at `object-add` it reads what lies in `dir`, as QEMU would. */
class RecordingQmp implements MigrationQmp {
  readonly calls: { command: string; args: Readonly<Record<string, unknown>> | undefined }[] = [];
  seen: { dirMode: number; files: SeenFile[] } | undefined;
  failOn = new Set<string>();
  #listeners = new Set<(e: MigrationQmpEvent) => void>();

  execute<S extends z.ZodType>(command: string, args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
    this.calls.push({ command, args });
    if (this.failOn.has(command)) return Promise.reject(new Error(`${command} failed`));
    if (command === 'object-add') {
      const dir = String(args?.['dir']);
      this.seen = {
        dirMode: statSync(dir).mode & 0o777,
        files: readdirSync(dir)
          .sort()
          .map((name) => ({ name, mode: statSync(path.join(dir, name)).mode & 0o777, text: readFileSync(path.join(dir, name), 'utf8') })),
      };
    }
    const reply = command === 'query-migrate' ? { status: 'setup', 'socket-address': [{ type: 'inet', host: '10.78.0.2', port: '40111' }] } : {};
    return Promise.resolve(schema.parse(reply));
  }

  emit(event: string, data?: Record<string, unknown>): void {
    for (const l of this.#listeners) l({ event, data, timestamp: { seconds: 1000, microseconds: 0 } });
  }

  on(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.add(listener);
  }

  off(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.delete(listener);
  }

  commands(): string[] {
    return this.calls.map((c) => c.command);
  }
}

void describe('MigrationTlsCredentials', () => {
  void it('shows QEMU the PEMs in a private directory under the names it expects, then removes them', async () => {
    const qmp = new RecordingQmp();
    const baseDir = path.join(root, 'install');
    const creds = await MigrationTlsCredentials.install({ qmp, logger: silent, baseDir, endpoint: 'server', material: sampleServerTls });
    const add = qmp.calls[0]?.args;
    assert.equal(add?.['qom-type'], 'tls-creds-x509');
    assert.equal(add['endpoint'], 'server');
    assert.equal(add['verify-peer'], true);
    assert.equal(add['id'], creds.objectId);
    assert.equal(path.dirname(String(add['dir'])), baseDir);
    assert.equal(qmp.seen?.dirMode, 0o700);
    assert.deepEqual(
      qmp.seen.files.map((f) => [f.name, f.mode]),
      [
        ['ca-cert.pem', 0o600],
        ['server-cert.pem', 0o600],
        ['server-key.pem', 0o600],
      ],
    );
    assert.equal(qmp.seen.files[2]?.text, sampleServerTls.key);
    assert.equal(statSync(baseDir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(baseDir), [], 'the files are gone once QEMU has loaded them');
    await creds.remove();
    await creds.remove();
    assert.deepEqual(qmp.commands(), ['object-add', 'object-del'], 'removed once');
    assert.deepEqual(tlsFileNames('client'), { caCert: 'ca-cert.pem', cert: 'client-cert.pem', key: 'client-key.pem' });
  });

  void it('gives every installation its own object, so a late removal never hits the next one', async () => {
    const qmp = new RecordingQmp();
    const baseDir = path.join(root, 'ids');
    const a = await MigrationTlsCredentials.install({ qmp, logger: silent, baseDir, endpoint: 'client', material: sampleServerTls });
    const b = await MigrationTlsCredentials.install({ qmp, logger: silent, baseDir, endpoint: 'client', material: sampleServerTls });
    assert.notEqual(a.objectId, b.objectId);
    await a.remove();
    assert.deepEqual(qmp.calls.at(-1)?.args, { id: a.objectId });
  });

  void it('reports QEMU refusing the credentials and leaves no file behind; removal after QEMU is gone does not throw', async () => {
    const qmp = new RecordingQmp();
    qmp.failOn.add('object-add');
    const baseDir = path.join(root, 'refused');
    await assert.rejects(
      MigrationTlsCredentials.install({ qmp, logger: silent, baseDir, endpoint: 'server', material: sampleServerTls }),
      (err) => err instanceof MigrationTlsError && /refused the migration's TLS credentials/.test(err.message),
    );
    assert.deepEqual(readdirSync(baseDir), []);
    const ok = new RecordingQmp();
    const creds = await MigrationTlsCredentials.install({ qmp: ok, logger: silent, baseDir, endpoint: 'server', material: sampleServerTls });
    ok.failOn.add('object-del');
    await creds.remove();
  });
});

void describe('migration TLS in the API', () => {
  void it('is required in the request and checked against its CA, naming the field', () => {
    const missing = PrepareIncomingRequestSchema.safeParse({});
    assert.deepEqual(missing.error?.issues.map((i) => i.path.join('.')), ['tls']);
    const mixed = MigrationTlsServerCredentialsSchema.safeParse({ ...sampleServerTls, caCert: foreignCredentials.caCert });
    assert.deepEqual(mixed.error?.issues.map((i) => i.path.join('.')), ['cert']);
    const shapes = MigrationTlsServerCredentialsSchema.safeParse({
      caCert: 'not a certificate',
      cert: `${sampleServerTls.cert}${sampleServerTls.cert}`,
      key: sampleServerTls.key.replace('PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'),
      extra: true,
    });
    assert.deepEqual(shapes.error?.issues.map((i) => i.path.join('.')).sort(), ['', 'caCert', 'cert', 'key']);
    const huge = MigrationTlsServerCredentialsSchema.safeParse({ ...sampleServerTls, cert: `-----BEGIN CERTIFICATE-----\n${'A'.repeat(64)}\n`.repeat(200) });
    assert.ok(huge.error?.issues.some((i) => i.path.join('.') === 'cert' && i.code === 'too_big'));
  });
});

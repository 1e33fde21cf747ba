// A migration's TLS credentials inside QEMU (ADR 0056): the source's side. (The
// target's stay in its launcher's TLS gate, incoming-gate.ts, because QEMU 7.2's
// server handshake blocks its main loop.) The PEMs from the operator's request are
// written into a fresh private directory (0700, files 0600, the names QEMU's
// tls-creds-x509 expects), loaded with `object-add` (verify-peer on: the peer must
// present a certificate that chains to the migration's CA), and the directory is
// removed at once: QEMU reads the files when the object is created and never again,
// so the keys stay on disk only for that moment. Each installation has its own object
// id, so a late removal never touches the credentials of the next migration;
// `remove()` deletes the object (a TLS session in progress keeps its own reference)
// and is safe to call twice or after QEMU is gone.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { emptyReturn, type MigrationQmp } from './qmp-port.ts';

/** The PEMs one side needs: the migration's CA, its own certificate and private key. */
export interface MigrationTlsMaterial {
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** `server` on the target (it listens), `client` on the source (it connects). */
export type MigrationTlsEndpoint = 'server' | 'client';

/**
 * Where the PEM files live while QEMU loads them: a private directory made for one
 * install. A launcher outside the pod writes them through the pod's held state
 * directory (ADR 0137); QEMU, in the pod, reads them by the pod's path.
 */
export interface TlsStaging {
  /** Writes `files` (name → PEM) into a new private directory: QEMU's path of it, and its removal. */
  stage(endpoint: MigrationTlsEndpoint, files: ReadonlyMap<string, string>): Promise<{ dir: string; remove: () => Promise<void> }>;
}

/** The launcher's own files: a 0700 directory with an unpredictable name under `baseDir`. */
export function localTlsStaging(baseDir: string): TlsStaging {
  return {
    stage: async (endpoint, files) => {
      await mkdir(baseDir, { recursive: true, mode: 0o700 });
      await chmod(baseDir, 0o700);
      // mkdtemp creates the directory 0700 with an unpredictable name.
      const dir = await mkdtemp(path.join(baseDir, `${endpoint}-`));
      const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
      try {
        for (const [name, pem] of files) await writeFile(path.join(dir, name), pem, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        await remove();
        throw err;
      }
      return { dir, remove };
    },
  };
}

export interface InstallMigrationTlsOptions {
  readonly qmp: MigrationQmp;
  readonly logger: Logger;
  /** A directory under the launcher's state dir; created 0700 when missing (unless `staging` is given). */
  readonly baseDir: string;
  /** Where the files are written instead of `baseDir` (a launcher outside the pod). */
  readonly staging?: TlsStaging;
  readonly endpoint: MigrationTlsEndpoint;
  readonly material: MigrationTlsMaterial;
}

export class MigrationTlsError extends Error {
  override name = 'MigrationTlsError';
}

/** The file names QEMU's tls-creds-x509 looks for in its `dir`. */
export function tlsFileNames(endpoint: MigrationTlsEndpoint): { caCert: string; cert: string; key: string } {
  return { caCert: 'ca-cert.pem', cert: `${endpoint}-cert.pem`, key: `${endpoint}-key.pem` };
}

export class MigrationTlsCredentials {
  /** The QOM id to name in `migrate-set-parameters` `tls-creds`. */
  readonly objectId: string;
  readonly #qmp: MigrationQmp;
  readonly #log: Logger;
  #removed = false;

  private constructor(qmp: MigrationQmp, logger: Logger, objectId: string) {
    this.#qmp = qmp;
    this.#log = logger;
    this.objectId = objectId;
  }

  /** Writes the PEMs privately, has QEMU load them, removes the files; throws MigrationTlsError when QEMU refuses them. */
  static async install(options: InstallMigrationTlsOptions): Promise<MigrationTlsCredentials> {
    const { qmp, endpoint, material } = options;
    const objectId = `keyvirt-migration-tls-${endpoint}-${process.getBuiltinModule('node:crypto').randomBytes(6).toString('hex')}`;
    const log = options.logger.child({ tlsObject: objectId });
    const names = tlsFileNames(endpoint);
    const staged = await (options.staging ?? localTlsStaging(options.baseDir)).stage(
      endpoint,
      new Map([[names.caCert, material.caCert], [names.cert, material.cert], [names.key, material.key]]),
    );
    try {
      await qmp.execute('object-add', { 'qom-type': 'tls-creds-x509', id: objectId, dir: staged.dir, endpoint, 'verify-peer': true }, emptyReturn);
    } catch (err) {
      throw new MigrationTlsError(`QEMU refused the migration's TLS credentials: ${(err as Error).message}`, { cause: err });
    } finally {
      await staged.remove();
    }
    log.info({ endpoint }, 'migration TLS credentials loaded');
    return new MigrationTlsCredentials(qmp, log, objectId);
  }

  /** Deletes the credentials object from QEMU; failures (QEMU gone) are logged, never thrown. */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    try {
      await this.#qmp.execute('object-del', { id: this.objectId }, emptyReturn);
      this.#log.info('migration TLS credentials removed');
    } catch (err) {
      this.#log.warn({ err }, 'could not remove the migration TLS credentials from QEMU');
    }
  }
}

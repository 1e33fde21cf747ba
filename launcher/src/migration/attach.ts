// Adds live migration to a launcher: the controller over its VM and the HTTP routes.
// A source launcher reads its target's RESUME time from the target launcher's API
// with its own token (both launchers of one VM mount the same per-VM token).
import path from 'node:path';
import type { Logger } from 'pino';
import { LauncherClient } from '../api/client.ts';
import { httpFetch } from '../api/http-fetch.ts';
import { MigrationClient } from '../api/migration-client.ts';
import type { MigrationTarget } from '../api/migration.ts';
import type { ApiServer } from '../http/server.ts';
import { MigrationConflictError, MigrationController, targetResumeReader, type MigratableVm, type MigrationLease } from './controller.ts';
import { registerMigrationRoutes } from './routes.ts';
import type { TlsStaging } from './tls.ts';

export interface AttachMigrationOptions {
  readonly server: ApiServer;
  readonly vm: MigratableVm & { finished(): Promise<unknown> };
  readonly mode: 'run' | 'migration-target';
  readonly token: string;
  /** The launcher's API listen address; a wildcard falls back to the pod IP from the environment. */
  readonly listenAddress: string;
  /** The launcher's state dir; migration TLS files go to a private directory inside it. */
  readonly stateDir: string;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** A highly available VM's lease, without the target lookup (added here). */
  readonly lease?: Omit<MigrationLease, 'targetIdentity'>;
  /** Where an outgoing migration's TLS files go, when not under `stateDir` (a launcher outside the pod, ADR 0137). */
  readonly tlsStaging?: TlsStaging;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The pod's own address: the API's listen address unless it is a wildcard, else KEYVIRT_POD_IP / POD_IP. */
export function podAddress(listenAddress: string, env: NodeJS.ProcessEnv): string | undefined {
  if (!WILDCARDS.has(listenAddress)) return listenAddress;
  const fromEnv = env.KEYVIRT_POD_IP ?? env.POD_IP;
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/** Reads the target launcher's lease identity from its status (same per-VM token). */
function targetLeaseIdentity(token: string): (target: MigrationTarget) => Promise<string> {
  return async (target) => {
    if (target.launcherUrl === undefined) throw new MigrationConflictError('no target launcher URL');
    const status = await new LauncherClient({ baseUrl: target.launcherUrl, token, timeoutMs: 2000, fetch: httpFetch }).status();
    const id = status.lease?.holderId;
    if (id === undefined) throw new MigrationConflictError('the target launcher has no lease identity: it was not started for a highly available VM');
    return id;
  };
}

export function attachMigration(options: AttachMigrationOptions): MigrationController {
  const lease = options.lease;
  const controller = new MigrationController({
    ...(lease === undefined ? {} : { lease: { ...lease, targetIdentity: targetLeaseIdentity(options.token) } }),
    vm: options.vm,
    logger: options.logger,
    mode: options.mode,
    podAddress: podAddress(options.listenAddress, options.env ?? process.env),
    tlsDir: path.join(options.stateDir, 'migration-tls'),
    ...(options.tlsStaging === undefined ? {} : { tlsStaging: options.tlsStaging }),
    readTargetResume: targetResumeReader((target, signal) => {
      if (target.launcherUrl === undefined) throw new Error('no target launcher URL');
      return new MigrationClient({ baseUrl: target.launcherUrl, token: options.token, timeoutMs: 2000, fetch: httpFetch }).incoming(signal);
    }),
  });
  registerMigrationRoutes(options.server, controller);
  void options.vm.finished().then(() => controller.incoming?.abandon('QEMU exited before the incoming migration finished'));
  return controller;
}

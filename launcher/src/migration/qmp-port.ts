// The slice of a QMP session that migration needs, declared where it is consumed.
// The launcher's QmpClient satisfies it; so does anything else that speaks QMP.
import { z } from 'zod';

export interface MigrationQmpEvent {
  readonly event: string;
  readonly data?: Readonly<Record<string, unknown>> | undefined;
  readonly timestamp: { readonly seconds: number; readonly microseconds: number };
}

export interface MigrationQmp {
  execute<S extends z.ZodType>(
    command: string,
    args: Readonly<Record<string, unknown>> | undefined,
    schema: S,
    options?: { timeoutMs?: number },
  ): Promise<z.infer<S>>;
  on(event: 'event', listener: (event: MigrationQmpEvent) => void): unknown;
  off(event: 'event', listener: (event: MigrationQmpEvent) => void): unknown;
}

export const emptyReturn = z.object({}).loose();
export const runStatusReturn = z.object({ running: z.boolean(), status: z.string() }).loose();

/** `MIGRATION` event data. */
export const migrationEventData = z.object({ status: z.string() }).loose();
/** `MIGRATION_PASS` event data. */
export const migrationPassEventData = z.object({ pass: z.number() }).loose();

export type CapabilityName =
  | 'events'
  | 'auto-converge'
  | 'postcopy-ram'
  | 'pause-before-switchover'
  | 'late-block-activate';

/** Sets migration capabilities; every listed capability is set explicitly (they persist between attempts). */
export async function setCapabilities(qmp: MigrationQmp, caps: Readonly<Partial<Record<CapabilityName, boolean>>>): Promise<void> {
  const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
  await qmp.execute('migrate-set-capabilities', { capabilities }, emptyReturn);
}

/** `tcp:` URI for QEMU, bracketing IPv6 literals. */
export function tcpUri(host: string, port: number): string {
  return host.includes(':') ? `tcp:[${host}]:${port}` : `tcp:${host}:${port}`;
}

/**
 * The TLS part of `migrate-set-parameters`: the credentials object to use and, on the
 * source, the name the target's certificate must carry. Every migration sets both,
 * so a value left from an earlier migration never applies to the next.
 */
export function tlsParameters(objectId: string, hostname?: string): Record<string, string> {
  return { 'tls-creds': objectId, ...(hostname === undefined ? {} : { 'tls-hostname': hostname }) };
}

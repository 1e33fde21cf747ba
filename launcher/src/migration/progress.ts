// QEMU's `query-migrate` answer, parsed at the edge, and its translation into the
// launcher's progress and result model.
import { z } from 'zod';
import type { MigrationPhase, MigrationProgress } from '../api/migration.ts';

const count = z.number().min(0);

const RamStatsSchema = z
  .object({
    transferred: count,
    remaining: count,
    total: count,
    'dirty-pages-rate': count.optional(),
    mbps: count.optional(),
    'dirty-sync-count': count.optional(),
    'page-size': count.optional(),
    'postcopy-requests': count.optional(),
  })
  .loose();

const SocketAddressSchema = z
  .object({ type: z.string(), host: z.string().optional(), port: z.string().optional() })
  .loose();

export const QueryMigrateSchema = z
  .object({
    status: z.string().optional(),
    'total-time': count.optional(),
    'expected-downtime': count.optional(),
    downtime: count.optional(),
    'setup-time': count.optional(),
    'cpu-throttle-percentage': count.optional(),
    'error-desc': z.string().optional(),
    'socket-address': z.array(SocketAddressSchema).optional(),
    ram: RamStatsSchema.optional(),
  })
  .loose();
export type QueryMigrate = z.infer<typeof QueryMigrateSchema>;

/** QEMU migration states after which nothing more happens. */
export const terminalStatuses: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

/** States in which the source guest has been switched over (the target holds the newest state). */
export const postCopyStatuses: ReadonlySet<string> = new Set([
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
]);

export interface ProgressContext {
  readonly migrationId: string;
  readonly phase: MigrationPhase;
  readonly elapsedMs: number;
  readonly downtimeLimitMs: number;
  readonly postCopy: boolean;
}

/** Maps one `query-migrate` answer to a progress event. */
export function toProgress(info: QueryMigrate, ctx: ProgressContext): MigrationProgress {
  const ram = info.ram;
  const pageSize = ram?.['page-size'] ?? 4096;
  const status = info.status ?? 'none';
  return {
    migrationId: ctx.migrationId,
    phase: ctx.phase,
    qemuStatus: status,
    elapsedMs: Math.max(0, Math.round(ctx.elapsedMs)),
    iteration: Math.round(ram?.['dirty-sync-count'] ?? 0),
    transferredBytes: Math.round(ram?.transferred ?? 0),
    remainingBytes: Math.round(ram?.remaining ?? 0),
    totalBytes: Math.round(ram?.total ?? 0),
    dirtyRateBytesPerSecond: Math.round((ram?.['dirty-pages-rate'] ?? 0) * pageSize),
    throughputBytesPerSecond: Math.round(((ram?.mbps ?? 0) * 1e6) / 8),
    downtimeLimitMs: Math.round(ctx.downtimeLimitMs),
    cpuThrottlePercent: Math.min(100, Math.round(info['cpu-throttle-percentage'] ?? 0)),
    postCopy: ctx.postCopy || postCopyStatuses.has(status),
  };
}

/** A QMP event timestamp ({seconds, microseconds}) as epoch microseconds. */
export function eventTimeMicros(timestamp: { readonly seconds: number; readonly microseconds: number }): number {
  return timestamp.seconds * 1_000_000 + timestamp.microseconds;
}

/** The TCP port a target listens on, from `query-migrate` on the destination. */
export function listeningPort(info: QueryMigrate): number | null {
  for (const address of info['socket-address'] ?? []) {
    const port = Number(address.port);
    if (Number.isInteger(port) && port > 0 && port <= 65_535) return port;
  }
  return null;
}

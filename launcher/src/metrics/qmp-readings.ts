// The QMP and guest-agent answers the metrics collector reads, parsed at the edge, and
// pure functions that turn them into the metrics API's numbers. QEMU's own counters
// (block, CPU threads, migration) describe what QEMU did; the balloon statistics and
// the guest agent's file systems and interface counters are the guest's word and are
// clamped to what the VM can have (ADR 0069, 0101).
import { z } from 'zod';
import { MAX_METRIC_VALUE, VM_METRICS_LIMITS } from '../api/vm-metrics.ts';
import type { DiskMetrics, FilesystemMetrics, InterfaceMetrics, MigrationMetrics } from '../api/vm-metrics.ts';
import type { QueryMigrate } from '../migration/progress.ts';

const num = z.number();

/** `query-blockstats` (qapi/block-core.json): one entry per block backend with a device. */
export const QueryBlockstatsSchema = z.array(
  z
    .object({
      device: z.string().optional(),
      qdev: z.string().optional(),
      'node-name': z.string().optional(),
      stats: z
        .object({
          rd_bytes: num,
          wr_bytes: num,
          rd_operations: num,
          wr_operations: num,
          flush_operations: num.optional(),
          rd_total_time_ns: num.optional(),
          wr_total_time_ns: num.optional(),
        })
        .loose(),
    })
    .loose(),
);
export type QueryBlockstats = z.infer<typeof QueryBlockstatsSchema>;

/** `query-cpus-fast` (qapi/machine.json). */
export const QueryCpusFastSchema = z.array(z.object({ 'cpu-index': z.int(), 'thread-id': z.int() }).loose());
export type QueryCpusFast = z.infer<typeof QueryCpusFastSchema>;

/** `query-balloon` (qapi/machine.json). */
export const QueryBalloonSchema = z.object({ actual: num }).loose();

/** `qom-get <balloon> guest-stats`: the guest driver's statistics (-1 where the guest gave none). */
export const BalloonGuestStatsSchema = z
  .object({ stats: z.record(z.string(), num), 'last-update': num.optional() })
  .loose();
export type BalloonGuestStats = z.infer<typeof BalloonGuestStatsSchema>;

/** `guest-network-get-interfaces` with the statistics qemu-ga adds (qga/qapi-schema.json). */
export const GuestInterfaceStatsSchema = z.array(
  z
    .object({
      name: z.string(),
      'hardware-address': z.string().optional(),
      statistics: z
        .object({
          'rx-bytes': num,
          'rx-packets': num,
          'rx-errs': num,
          'rx-dropped': num,
          'tx-bytes': num,
          'tx-packets': num,
          'tx-errs': num,
          'tx-dropped': num,
        })
        .loose()
        .optional(),
    })
    .loose(),
);
export type GuestInterfaceStats = z.infer<typeof GuestInterfaceStatsSchema>;

/** `guest-get-fsinfo` (only the fields read here). */
export const GuestFsUsageSchema = z.array(
  z.object({ mountpoint: z.string(), type: z.string(), 'used-bytes': num.optional(), 'total-bytes': num.optional() }).loose(),
);
export type GuestFsUsage = z.infer<typeof GuestFsUsageSchema>;

/** A count: NaN, negative or absent is 0; beyond `max` is `max`. */
export function clampCount(value: number | undefined, max: number = MAX_METRIC_VALUE): number {
  if (value === undefined || !Number.isFinite(value) || value < 0) return 0;
  return Math.min(Math.floor(value), max);
}

/** A label value: control characters dropped, cut to the API's name length. */
export function clampName(value: string): string {
  let out = '';
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (code < 0x20 || code === 0x7f) continue;
    out += ch;
    if (out.length >= VM_METRICS_LIMITS.nameLength) break;
  }
  return out.slice(0, VM_METRICS_LIMITS.nameLength);
}

/**
 * Block counters per template disk. The launcher names block nodes `disk-<name>` and
 * the cloud-init seed `cloudinit`; the qdev id is `ua-<name>`. Entries that are neither
 * are skipped.
 */
export function diskMetrics(stats: QueryBlockstats): DiskMetrics[] {
  const out: DiskMetrics[] = [];
  for (const entry of stats) {
    const node = entry['node-name'] ?? '';
    const qdev = entry.qdev ?? '';
    const fromQdev = /(?:^|\/)ua-([^/]+)(?:\/virtio-backend)?$/.exec(qdev)?.[1];
    const name = node.startsWith('disk-') ? node.slice('disk-'.length) : node === 'cloudinit' ? 'cloudinit' : fromQdev;
    if (name === undefined || name === '') continue;
    const s = entry.stats;
    out.push({
      name: clampName(name),
      readBytes: clampCount(s.rd_bytes),
      writeBytes: clampCount(s.wr_bytes),
      readOps: clampCount(s.rd_operations),
      writeOps: clampCount(s.wr_operations),
      flushOps: clampCount(s.flush_operations),
      readTimeSeconds: clampCount(s.rd_total_time_ns) / 1e9,
      writeTimeSeconds: clampCount(s.wr_total_time_ns) / 1e9,
    });
    if (out.length >= VM_METRICS_LIMITS.disks) break;
  }
  return out;
}

/** The interface counters the guest agent reports, named by the template interface with the same MAC. */
export function interfaceMetrics(guest: GuestInterfaceStats, template: readonly { name: string; macAddress?: string | undefined }[]): InterfaceMetrics[] {
  const byMac = new Map<string, string>();
  for (const iface of template) if (iface.macAddress !== undefined) byMac.set(iface.macAddress.toLowerCase(), iface.name);
  const out: InterfaceMetrics[] = [];
  const seen = new Set<string>();
  for (const iface of guest) {
    const name = byMac.get((iface['hardware-address'] ?? '').toLowerCase());
    const s = iface.statistics;
    if (name === undefined || s === undefined || seen.has(name)) continue;
    seen.add(name);
    out.push({
      name: clampName(name),
      receiveBytes: clampCount(s['rx-bytes']),
      transmitBytes: clampCount(s['tx-bytes']),
      receivePackets: clampCount(s['rx-packets']),
      transmitPackets: clampCount(s['tx-packets']),
      receiveErrors: clampCount(s['rx-errs']),
      transmitErrors: clampCount(s['tx-errs']),
      receiveDropped: clampCount(s['rx-dropped']),
      transmitDropped: clampCount(s['tx-dropped']),
    });
    if (out.length >= VM_METRICS_LIMITS.interfaces) break;
  }
  return out;
}

/**
 * File systems the guest reports with sizes; each size clamped to `maxBytes` (the
 * VM's disks together: no guest file system is larger), used ≤ total.
 */
export function filesystemMetrics(fs: GuestFsUsage, maxBytes: number): FilesystemMetrics[] {
  const out: FilesystemMetrics[] = [];
  for (const entry of fs) {
    if (entry['total-bytes'] === undefined) continue;
    const totalBytes = clampCount(entry['total-bytes'], maxBytes);
    out.push({ mountpoint: clampName(entry.mountpoint), type: clampName(entry.type), totalBytes, usedBytes: clampCount(entry['used-bytes'], totalBytes) });
    if (out.length >= VM_METRICS_LIMITS.filesystems) break;
  }
  return out;
}

/** Guest memory figures from the balloon statistics, clamped to the guest's RAM; -1 (not reported) is absent. */
export function balloonGuestMemory(stats: BalloonGuestStats, guestBytes: number): { guestAvailableBytes?: number; guestFreeBytes?: number } {
  const pick = (key: string): number | undefined => {
    const v = stats.stats[key];
    return v === undefined || !Number.isFinite(v) || v < 0 ? undefined : clampCount(v, guestBytes);
  };
  const available = pick('stat-available-memory');
  const free = pick('stat-free-memory');
  return { ...(available === undefined ? {} : { guestAvailableBytes: available }), ...(free === undefined ? {} : { guestFreeBytes: free }) };
}

/** Migration figures from `query-migrate`; undefined when no migration ever ran in this QEMU. */
export function migrationMetrics(q: QueryMigrate): MigrationMetrics | undefined {
  if (q.status === undefined || q.status === 'none') return undefined;
  const ram = q.ram;
  const pageSize = ram?.['page-size'] ?? 4096;
  return {
    status: clampName(q.status),
    transferredBytes: clampCount(ram?.transferred),
    remainingBytes: clampCount(ram?.remaining),
    totalBytes: clampCount(ram?.total),
    dirtyRateBytesPerSecond: clampCount((ram?.['dirty-pages-rate'] ?? 0) * pageSize),
    iterations: clampCount(ram?.['dirty-sync-count']),
  };
}

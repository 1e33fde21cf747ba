// The launcher's per-VM metrics (`GET /v1/metrics`, ADR 0069): what QEMU, the guest
// agent and /proc say about one VM, as plain counters and gauges. The node agent
// parses this with the same schema and turns it into `keyvirt_vmi_*` series. Every
// number is finite and non-negative and every list is bounded, on the launcher's side
// (the guest reports what it likes) and again when the node agent parses it (the
// launcher of an escaped guest answers what it likes).
import { z } from 'zod';

/** Upper bounds of one metrics answer. */
export const VM_METRICS_LIMITS = {
  vcpus: 512,
  disks: 64,
  interfaces: 16,
  filesystems: 16,
  nameLength: 64,
} as const;

/** The largest count the answer carries (2^53 - 1: exact in a double, far beyond any real counter). */
export const MAX_METRIC_VALUE = Number.MAX_SAFE_INTEGER;

const count = z.number().min(0).max(MAX_METRIC_VALUE);
const name = z.string().max(VM_METRICS_LIMITS.nameLength);

export const VcpuMetricsSchema = z.object({
  index: z.int().min(0).max(VM_METRICS_LIMITS.vcpus),
  /** Time the vCPU thread ran on a host CPU (schedstat), in seconds. */
  seconds: count,
});

export const DiskMetricsSchema = z.object({
  /** The template disk name (cloud-init's seed is `cloudinit`). */
  name,
  readBytes: count,
  writeBytes: count,
  readOps: count,
  writeOps: count,
  flushOps: count,
  readTimeSeconds: count,
  writeTimeSeconds: count,
});

export const InterfaceMetricsSchema = z.object({
  /** The template interface name, matched by MAC address. */
  name,
  receiveBytes: count,
  transmitBytes: count,
  receivePackets: count,
  transmitPackets: count,
  receiveErrors: count,
  transmitErrors: count,
  receiveDropped: count,
  transmitDropped: count,
});

export const FilesystemMetricsSchema = z.object({
  mountpoint: name,
  type: name,
  usedBytes: count,
  totalBytes: count,
});

export const MigrationMetricsSchema = z.object({
  /** QEMU's migration status (active, completed, failed …). */
  status: name,
  transferredBytes: count,
  remainingBytes: count,
  totalBytes: count,
  dirtyRateBytesPerSecond: count,
  iterations: count,
});

export const VmMetricsSchema = z.object({
  vm: z.object({ namespace: name, name, uid: name }),
  /** The launcher's phase (Starting, Running, Paused, Migrating …). */
  phase: name,
  collectedAt: z.string().max(40),
  vcpus: z.array(VcpuMetricsSchema).max(VM_METRICS_LIMITS.vcpus),
  memory: z.object({
    /** Guest RAM as configured. */
    guestBytes: count,
    /** Resident set of the QEMU process (guest RAM it touched + QEMU's own). */
    qemuResidentBytes: count.optional(),
    /** Resident set of the launcher process. */
    launcherResidentBytes: count,
    /** Launcher RSS + QEMU's RSS outside the guest RAM mapping. */
    overheadBytes: count.optional(),
    /** The balloon's current size (query-balloon), when the VM has one. */
    balloonBytes: count.optional(),
    /** Guest-reported memory available to programs (balloon statistics), clamped to guestBytes. */
    guestAvailableBytes: count.optional(),
    /** Guest-reported unused memory (balloon statistics), clamped to guestBytes. */
    guestFreeBytes: count.optional(),
  }),
  disks: z.array(DiskMetricsSchema).max(VM_METRICS_LIMITS.disks),
  interfaces: z.array(InterfaceMetricsSchema).max(VM_METRICS_LIMITS.interfaces),
  filesystems: z.array(FilesystemMetricsSchema).max(VM_METRICS_LIMITS.filesystems),
  migration: MigrationMetricsSchema.optional(),
});
export type VmMetrics = z.infer<typeof VmMetricsSchema>;
export type DiskMetrics = z.infer<typeof DiskMetricsSchema>;
export type InterfaceMetrics = z.infer<typeof InterfaceMetricsSchema>;
export type FilesystemMetrics = z.infer<typeof FilesystemMetricsSchema>;
export type MigrationMetrics = z.infer<typeof MigrationMetricsSchema>;
export type VcpuMetrics = z.infer<typeof VcpuMetricsSchema>;

/** The file next to the API token that holds the read-only metrics token, when the Secret has one (ADR 0069). */
export const METRICS_TOKEN_FILE_NAME = 'metrics-token';

/** The HMAC input that binds a metrics token to one VM (ADR 0069). */
export function metricsTokenMessage(vmUid: string): string {
  return `keyvirt.io/launcher-metrics/v1\n${vmUid}`;
}

/**
 * The metrics token of one VM: HMAC-SHA256 of its uid under the cluster's metrics key
 * (hex). The operator writes it into the launcher's Secret; the node agent derives it
 * from the key and the launcher pod's VM uid label. It opens `GET /v1/metrics` only.
 */
export function deriveMetricsToken(key: Buffer, vmUid: string): string {
  return process.getBuiltinModule('node:crypto').createHmac('sha256', key).update(metricsTokenMessage(vmUid)).digest('hex');
}

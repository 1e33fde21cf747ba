// The launcher's configuration file: everything the operator decides for one launcher
// pod (which VM, its template, where its disks are, how to listen), written into a
// Secret mounted in the pod. The launcher reads nothing else and holds no Kubernetes
// credentials.
import { VirtualMachineTemplate } from '@keyvirt/crds';
import { z } from 'zod';

export const LAUNCHER_CONFIG_API_VERSION = 'launcher.keyvirt.io/v1';

const absolutePath = z.string().min(1).regex(/^\//, { error: 'must be an absolute path' });
const port = z.int().min(1).max(65_535);
const PCI_ADDRESS = /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

export const ResolvedDiskSchema = z
  .object({
    path: absolutePath.describe('The image file (qcow2 or raw) on the mounted storage'),
    format: z.enum(['qcow2', 'raw']).optional().describe('Overrides the template format; PVC disks default to raw'),
  })
  .describe('Where a template disk lives inside the launcher pod');

export const PortForwardSchema = z.object({
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
  hostAddress: z.string().default('0.0.0.0').describe('Address in the pod the port listens on'),
  hostPort: port,
  guestPort: port,
});
export type PortForwardConfig = z.output<typeof PortForwardSchema>;

export const ResolvedInterfaceSchema = z.object({
  tapDevice: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,15}$/)
    .optional()
    .describe('bridge binding: the tap device QEMU attaches to; it must exist unless `bridge` is set'),
  bridge: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,15}$/)
    .optional()
    .describe('bridge binding: create the tap device and attach it to this bridge (the pod needs NET_ADMIN)'),
  portForwards: z
    .array(PortForwardSchema)
    .max(64)
    .optional()
    .describe('masquerade binding: overrides the forwards derived from the template ports (pod port = guest port)'),
  podNetwork: z
    .boolean()
    .optional()
    .describe('The node agent prepares the pod network (ADR 0094): QEMU opens its tap kvtap0 and the launcher serves the guest its lease by DHCP; otherwise masquerade runs in QEMU user-mode networking'),
});

export const LEASE_HOLDER_ENV = 'KEYVIRT_POD_UID';
export const LEASE_NODE_ENV = 'KEYVIRT_NODE_NAME';
/** ρ: the bound assumed on how far two hosts' monotonic clock rates differ (ADR 0063). */
export const LEASE_CLOCK_RATE_BOUND = 0.01;
/** K: the time allowed from the self-fence decision to QEMU gone, writes included (ADR 0063). */
export const LEASE_KILL_LATENCY_MS = 1000;
/** F by default (ADR 0063). */
export const LEASE_DEFAULT_FENCE_TIMEOUT_MS = 5000;

// The storage lease of a highly available VM (ADR 0063). Absent for a VM that is not
// highly available: such a launcher takes no lease at all. The holder identity is the
// launcher pod's UID, unknown when the operator renders this file: the pod passes it in
// the environment variable KEYVIRT_POD_UID (downward API, fieldRef metadata.uid) and,
// for the record only, its node name in KEYVIRT_NODE_NAME (fieldRef spec.nodeName).
// `holderId` overrides the environment (tests running a launcher outside a pod).
export const LeaseSchema = z
  .object({
    path: absolutePath.describe('The lease file in the pod, e.g. /var/lib/keyvirt/lease/lease (its directory is writable)'),
    holderId: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,128}$/)
      .optional()
      .describe(`This launcher's identity in the lease; default: the pod UID from ${LEASE_HOLDER_ENV}`),
    nodeFenced: z
      .boolean()
      .default(false)
      .describe('The previous holder\'s node is known fenced (out-of-service or marked by an admin): claim without waiting for expiry'),
    fenceDisks: z
      .array(z.string().min(1))
      .max(64)
      .optional()
      .describe('Template disks copied to a new inode on a takeover; default: every writable disk of the template'),
    renewIntervalMs: z.int().min(50).max(60_000).default(1000).describe('R: how often the holder renews'),
    fenceTimeoutMs: z.int().min(100).max(600_000).default(LEASE_DEFAULT_FENCE_TIMEOUT_MS).describe('F: the holder kills QEMU once its last renewal started this long ago'),
    acquireTimeoutMs: z.int().min(100).max(600_000).default(8000).describe('L: a lease unchanged this long is expired'),
    agentRestartGraceMs: z
      .int()
      .min(0)
      .max(300_000)
      .default(0)
      .describe(
        "A launcher run by the node agent (ADR 0138): the F of the last renewal an agent that stops writes, so that QEMU runs on while the next agent starts; 0: none, QEMU is fenced F after the agent's last renewal",
      ),
  })
  .refine((l) => l.agentRestartGraceMs === 0 || l.agentRestartGraceMs >= l.fenceTimeoutMs, {
    error: 'agentRestartGraceMs must be 0 or at least fenceTimeoutMs',
    path: ['agentRestartGraceMs'],
  })
  .refine((l) => l.fenceTimeoutMs >= 3 * l.renewIntervalMs, {
    error: 'fenceTimeoutMs must be at least 3 × renewIntervalMs',
    path: ['fenceTimeoutMs'],
  })
  .refine((l) => l.acquireTimeoutMs / (1 + LEASE_CLOCK_RATE_BOUND) > l.fenceTimeoutMs / (1 - LEASE_CLOCK_RATE_BOUND) + LEASE_KILL_LATENCY_MS, {
    error: 'acquireTimeoutMs must exceed fenceTimeoutMs by the kill latency (1 s) and the clock-rate margin (ADR 0063)',
    path: ['acquireTimeoutMs'],
  })
  .describe('Storage lease of a highly available VM (ADR 0063)');
export type LeaseConfig = z.output<typeof LeaseSchema>;

export const LauncherConfigSchema = z.object({
  apiVersion: z.literal(LAUNCHER_CONFIG_API_VERSION),
  vm: z.object({
    name: z.string().min(1).max(253),
    namespace: z.string().min(1).max(63),
    uid: z.string().min(1).max(64),
  }),
  template: VirtualMachineTemplate,
  terminationGracePeriodSeconds: z.int().min(0).max(3600).default(180),
  mode: z.enum(['run', 'migration-target']).default('run'),
  disks: z.record(z.string(), ResolvedDiskSchema).default({}).describe('Template disk name → resolved image'),
  interfaces: z.record(z.string(), ResolvedInterfaceSchema).default({}).describe('Template interface name → backend details'),
  hostDevices: z
    .record(z.string(), z.string().regex(PCI_ADDRESS, { error: 'must be a PCI address such as 0000:3b:00.0' }))
    .default({})
    .describe('Template host device name → PCI address allocated by the device plugin'),
  listen: z
    .object({ address: z.string().default('0.0.0.0'), port: z.int().min(0).max(65_535).default(8443) })
    .prefault({}),
  tokenFile: absolutePath.describe('File holding the bearer token the operator presents'),
  stateDir: absolutePath.describe('Writable directory for sockets, the seed image and logs'),
  allowEmulation: z.boolean().default(false).describe('Allow TCG when KVM is unusable (the template may also allow it)'),
  qemu: z
    .object({
      binary: z.string().default('qemu-system-x86_64'),
      vnc: z.boolean().default(true),
      host: z
        .enum(['launcher', 'pod'])
        .default('launcher')
        .describe("QEMU's parent: the launcher, or the pod's PID 1 (launcher/pod/vm-pod.sh) through the state directory (ADR 0131)"),
      hugepagesPath: absolutePath.default('/dev/hugepages'),
    })
    .prefault({}),
  guestAgent: z
    .object({
      pollIntervalMs: z.int().min(100).max(600_000).default(5000),
      retryIntervalMs: z.int().min(100).max(600_000).default(1000),
    })
    .prefault({}),
  lease: LeaseSchema.optional(),
});
export type LauncherConfig = z.output<typeof LauncherConfigSchema>;
export type LauncherConfigInput = z.input<typeof LauncherConfigSchema>;

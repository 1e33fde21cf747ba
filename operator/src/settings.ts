// The operator's settings: flags, or KEYVIRT_OPERATOR_* variables in their place. A bad
// value ends the start with one line per problem, each naming the flag and its variable.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { LEASE_DEFAULT_FENCE_TIMEOUT_MS } from '@keyvirt/launcher/api';

export const VERSION = '0.1.0';

const boolFlag = z.enum(['true', 'false']).transform((v) => v === 'true');

export const settingsSchema = z.object({
  kubeconfig: z.string().optional(),
  namespace: z.string().min(1).default('keyvirt-system'),
  healthAddress: z.string().regex(/^[^:]+:\d+$/, { error: 'expected host:port' }).default('0.0.0.0:8080'),
  /** /metrics names every tenant's VMs: loopback unless exposed on purpose (ADR 0100); equal to healthAddress, one listener serves both. */
  metricsAddress: z.string().regex(/^[^:]+:\d+$/, { error: 'expected host:port' }).default('127.0.0.1:8081'),
  leaderElect: boolFlag.default(true),
  leaseName: z.string().default('keyvirt-operator'),
  identity: z.string().min(1).default(`${hostname()}_${process.pid}`),
  leaseDurationMs: z.coerce.number().int().min(1000).default(15_000),
  renewDeadlineMs: z.coerce.number().int().min(500).default(10_000),
  retryPeriodMs: z.coerce.number().int().min(100).default(2_000),
  launcherImage: z.string().min(1).default(`localhost/keyvirt/launcher:${VERSION}`),
  launcherPullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
  allowEmulation: boolFlag.default(false),
  /** Who prepares the guest's pod network (ADR 0094): the node agent, or QEMU's user-mode network in the launcher. */
  podNetwork: z.enum(['node-agent', 'user-mode'], { error: 'pod-network must be node-agent or user-mode' }).default('user-mode'),
  /** Where launchers run (ADR 0134): in their pods, or in the node agent for the VMs it can serve. */
  launcherHost: z.enum(['pod', 'node-agent'], { error: 'launcher-host must be pod or node-agent' }).default('pod'),
  workers: z.coerce.number().int().min(1).max(64).default(4),
  /** Manage only the VMs whose labels match (a Kubernetes label selector); all when empty. */
  vmSelector: z.string().optional(),
  /** Manage only the StorageDomains whose labels match (a Kubernetes label selector); all when empty. */
  storageDomainSelector: z.string().optional(),
  /** Manage only the MigrationPolicies whose labels match (a Kubernetes label selector); the VM selector when absent. */
  migrationPolicySelector: z.string().optional(),
  /** oVirt's cluster scheduling policy and its HighUtilization / LowUtilization parameters (percent). */
  schedulingPolicy: z.enum(['evenly_distributed', 'power_saving']).default('evenly_distributed'),
  highUtilization: z.coerce.number().int().min(1).max(100).default(80),
  lowUtilization: z.coerce.number().int().min(0).max(99).default(20),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  /** Client-side rate limit of API requests (status writes first; watches and Leases exempt), KubeVirt's controller defaults. */
  apiQps: z.coerce.number().min(1).max(10_000).default(200),
  apiBurst: z.coerce.number().int().min(1).max(20_000).default(400),
  /** The subresources.keyvirt.io aggregated API (ADR 0066): off unless both certificate files are given. */
  subresourcesAddress: z.string().regex(/^[^:]+:\d+$/, { error: 'expected host:port' }).default('0.0.0.0:8443'),
  subresourcesCertFile: z.string().min(1).optional(),
  subresourcesKeyFile: z.string().min(1).optional(),
  /** The launcher eviction webhook's path token (ADR 0121), served on the subresources listener: off without it. */
  evictionWebhookTokenFile: z.string().min(1).optional(),
  /** HA restart budget: at most this many HA restarts of one VM within the window (0: none). */
  haRestartBudget: z.coerce.number().int().min(0).max(100).default(3),
  haRestartWindowSeconds: z.coerce.number().int().min(1).max(7 * 24 * 3600).default(600),
  /** A held HA VM's lease stays renewed this long while its node agent restarts (ADR 0138); 0: none. */
  agentRestartGraceSeconds: z.coerce
    .number()
    .int()
    .max(300)
    .refine((s) => s === 0 || s * 1000 >= LEASE_DEFAULT_FENCE_TIMEOUT_MS, { error: `must be 0 or at least the lease's F (${LEASE_DEFAULT_FENCE_TIMEOUT_MS / 1000} s)` })
    .default(30),
  /** The cluster's metrics key (ADR 0069): launcher Secrets then carry each VM's read-only metrics token. */
  metricsKeyFile: z.string().min(1).optional(),
});
export type Settings = z.infer<typeof settingsSchema>;

export const FLAGS = {
  kubeconfig: 'kubeconfig',
  namespace: 'namespace',
  healthAddress: 'health-address',
  metricsAddress: 'metrics-address',
  leaderElect: 'leader-elect',
  leaseName: 'lease-name',
  identity: 'identity',
  leaseDurationMs: 'lease-duration-ms',
  renewDeadlineMs: 'renew-deadline-ms',
  retryPeriodMs: 'retry-period-ms',
  launcherImage: 'launcher-image',
  launcherPullPolicy: 'launcher-pull-policy',
  allowEmulation: 'allow-emulation',
  podNetwork: 'pod-network',
  launcherHost: 'launcher-host',
  workers: 'workers',
  vmSelector: 'vm-selector',
  storageDomainSelector: 'storage-domain-selector',
  migrationPolicySelector: 'migration-policy-selector',
  schedulingPolicy: 'scheduling-policy',
  highUtilization: 'high-utilization',
  lowUtilization: 'low-utilization',
  logLevel: 'log-level',
  apiQps: 'api-qps',
  apiBurst: 'api-burst',
  subresourcesAddress: 'subresources-address',
  subresourcesCertFile: 'subresources-cert-file',
  subresourcesKeyFile: 'subresources-key-file',
  evictionWebhookTokenFile: 'eviction-webhook-token-file',
  haRestartBudget: 'ha-restart-budget',
  haRestartWindowSeconds: 'ha-restart-window-seconds',
  agentRestartGraceSeconds: 'agent-restart-grace-seconds',
  metricsKeyFile: 'metrics-key-file',
} as const satisfies Record<keyof Settings, string>;

/** The variable that stands in for a flag. */
export function envNameOf(flag: string): string {
  return `KEYVIRT_OPERATOR_${flag.toUpperCase().replaceAll('-', '_')}`;
}

/** Settings that cannot be used: each problem names the flag (and its variable) and what is wrong. */
export class SettingsError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid settings:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'SettingsError';
    this.problems = problems;
  }
}

function flagOf(key: PropertyKey | undefined): string | undefined {
  return typeof key === 'string' && Object.hasOwn(FLAGS, key) ? FLAGS[key as keyof Settings] : undefined;
}

/** The settings from the command line, a flag's variable standing in where the flag is absent. */
export function readSettings(argv: readonly string[], env: NodeJS.ProcessEnv): Settings {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: Object.fromEntries(Object.values(FLAGS).map((f) => [f, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new SettingsError([err instanceof Error ? err.message : String(err)]);
  }
  const raw: Record<string, string | undefined> = {};
  for (const [key, flag] of Object.entries(FLAGS)) {
    const v = values[flag];
    raw[key] = typeof v === 'string' ? v : env[envNameOf(flag)];
  }
  raw.kubeconfig ??= env.KUBECONFIG;
  raw.namespace ??= env.POD_NAMESPACE;
  const parsed = settingsSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new SettingsError(
    parsed.error.issues.map((issue) => {
      const flag = flagOf(issue.path[0]);
      const where = flag === undefined ? issue.path.join('.') : `--${flag} (${envNameOf(flag)})`;
      return `${where}: ${issue.message}`;
    }),
  );
}

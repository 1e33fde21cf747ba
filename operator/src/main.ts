#!/usr/bin/env node
// The KeyVirt operator. Reads its settings from flags (or KEYVIRT_OPERATOR_* variables),
// connects with the kubeconfig (or in-cluster credentials), and runs until SIGTERM/SIGINT:
// the caches, the health and metrics server and the metrics for the life of the process,
// the controllers one leader term at a time (fresh controllers over the same caches after
// a lost lease).
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { LEASE_DEFAULT_FENCE_TIMEOUT_MS } from '@keyvirt/launcher/api';
import { OperatorMetrics } from './metrics.ts';
import { sleepOn, systemClock, type Clock } from './runtime/clock.ts';
import { HealthServer } from './runtime/health-server.ts';
import { ManagerCaches } from './runtime/manager-caches.ts';
import { EventRecorder } from './runtime/event-recorder.ts';
import { KubeClient } from './runtime/kube-client.ts';
import { loadApiAccess } from './runtime/api-access.ts';
import { Manager } from './runtime/manager.ts';
import type { LauncherSettings } from './vm/launcher-pod.ts';
import { readMetricsKey } from './vm/launcher-metrics-token.ts';
import { policyPlacementDecider } from './scheduler/policy-placement-decider.ts';
import { addMigrationPolicyController } from './migration-policy/policy-wiring.ts';
import { addImageController, DEFAULT_IMAGE_PROGRESS_INTERVAL_MS, DEFAULT_IMAGE_RETRY_MS } from './image/image-wiring.ts';
import { addStorageDomainController, DEFAULT_PROBE_INTERVAL_MS, DEFAULT_RETRY_AFTER_FAILURE_MS } from './storage/storage-wiring.ts';
import { addVmController } from './vm/vm-wiring.ts';
import { addBudgetRemovalController } from './disruption-budget/budget-wiring.ts';
import { addEvacuationController } from './evacuation/evacuation-wiring.ts';
import { addMigrationController } from './migration/migration-wiring.ts';
import { startSubresourceServer } from './subresources/subresource-wiring.ts';
import { readWebhookToken } from './eviction-webhook/webhook-token.ts';
import { addHaController } from './ha/ha-wiring.ts';

const VERSION = '0.1.0';

const boolFlag = z.enum(['true', 'false']).transform((v) => v === 'true');

const settingsSchema = z.object({
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
    .min(0)
    .max(300)
    .refine((s) => s === 0 || s * 1000 >= LEASE_DEFAULT_FENCE_TIMEOUT_MS, { error: `agent-restart-grace-seconds must be 0 or at least the lease's F (${LEASE_DEFAULT_FENCE_TIMEOUT_MS / 1000} s)` })
    .default(30),
  /** The cluster's metrics key (ADR 0069): launcher Secrets then carry each VM's read-only metrics token. */
  metricsKeyFile: z.string().min(1).optional(),
});
type Settings = z.infer<typeof settingsSchema>;

const FLAGS = {
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

function readSettings(argv: string[], env: NodeJS.ProcessEnv): Settings {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.values(FLAGS).map((f) => [f, { type: 'string' as const }])),
    strict: true,
  });
  const raw: Record<string, string | undefined> = {};
  for (const [key, flag] of Object.entries(FLAGS)) {
    const envName = `KEYVIRT_OPERATOR_${flag.toUpperCase().replaceAll('-', '_')}`;
    const v = values[flag];
    raw[key] = typeof v === 'string' ? v : env[envName];
  }
  raw.kubeconfig ??= env.KUBECONFIG;
  raw.namespace ??= env.POD_NAMESPACE;
  return settingsSchema.parse(raw);
}

/** Everything a controller needs to register itself on the manager. */
export interface ControllerContext {
  manager: Manager;
  client: KubeClient;
  log: Logger;
  clock: Clock;
  metrics: OperatorMetrics;
  events: EventRecorder;
  settings: Settings;
}

/** Whether this operator serves the launcher eviction webhook (ADR 0121): the subresources listener with a webhook token. */
function servesEvictionWebhook(settings: Settings): boolean {
  return settings.subresourcesCertFile !== undefined && settings.subresourcesKeyFile !== undefined && settings.evictionWebhookTokenFile !== undefined;
}

/** Every controller of the operator; each adds its informers and controller to the manager. */
const controllers: ((ctx: ControllerContext) => void)[] = [
  (ctx) => {
    const launcher: LauncherSettings = {
      image: ctx.settings.launcherImage,
      args: [],
      imagePullPolicy: ctx.settings.launcherPullPolicy,
      allowEmulation: ctx.settings.allowEmulation,
      podNetwork: ctx.settings.podNetwork,
      launcherHost: ctx.settings.launcherHost,
      agentRestartGraceSeconds: ctx.settings.agentRestartGraceSeconds,
      metricsKey: ctx.settings.metricsKeyFile === undefined ? undefined : readMetricsKey(ctx.settings.metricsKeyFile),
    };
    const policy = { name: ctx.settings.schedulingPolicy, highUtilization: ctx.settings.highUtilization, lowUtilization: ctx.settings.lowUtilization };
    const placement = policyPlacementDecider({ policy, onUnschedulable: (details) => ctx.log.debug({ details }, 'no node fits a VM') });
    const haBudget = { maxRestarts: ctx.settings.haRestartBudget, windowMs: ctx.settings.haRestartWindowSeconds * 1000 };
    const vmController = addVmController({ ...ctx, settings: launcher, placement, workers: ctx.settings.workers, vmSelector: ctx.settings.vmSelector, haBudget });
    addHaController({ ...ctx, settings: launcher, placement, budget: haBudget, vmController, workers: ctx.settings.workers, vmSelector: ctx.settings.vmSelector });
    addMigrationController({ ...ctx, settings: launcher, placement, workers: ctx.settings.workers, vmSelector: ctx.settings.vmSelector });
  },
  (ctx) => {
    addStorageDomainController({
      ...ctx,
      observer: ctx.metrics,
      domainSelector: ctx.settings.storageDomainSelector,
      vmSelector: ctx.settings.vmSelector,
      settings: {
        namespace: ctx.settings.namespace,
        image: ctx.settings.launcherImage,
        imagePullPolicy: ctx.settings.launcherPullPolicy,
        probeIntervalMs: DEFAULT_PROBE_INTERVAL_MS,
        retryAfterFailureMs: DEFAULT_RETRY_AFTER_FAILURE_MS,
      },
    });
  },
  (ctx) => {
    addImageController({
      ...ctx,
      observer: ctx.metrics,
      imageSelector: ctx.settings.vmSelector,
      domainSelector: ctx.settings.storageDomainSelector ?? ctx.settings.vmSelector,
      settings: {
        namespace: ctx.settings.namespace,
        image: ctx.settings.launcherImage,
        imagePullPolicy: ctx.settings.launcherPullPolicy,
        retryAfterFailureMs: DEFAULT_IMAGE_RETRY_MS,
        progressIntervalMs: DEFAULT_IMAGE_PROGRESS_INTERVAL_MS,
      },
    });
  },
  (ctx) => {
    addMigrationPolicyController({ ...ctx, observer: ctx.metrics, policySelector: ctx.settings.migrationPolicySelector, vmSelector: ctx.settings.vmSelector });
  },
  (ctx) => {
    // Earlier operators' launcher budgets go only where the eviction webhook stands in for them (ADR 0121).
    if (servesEvictionWebhook(ctx.settings)) addBudgetRemovalController({ ...ctx, observer: ctx.metrics });
    addEvacuationController({ ...ctx, observer: ctx.metrics, vmSelector: ctx.settings.vmSelector });
  },
];

/** What every leader term shares: the caches and the metrics, both for the life of the process. */
interface Process {
  settings: Settings;
  log: Logger;
  client: KubeClient;
  caches: ManagerCaches;
  metrics: OperatorMetrics;
}

/** One leader term: fresh controllers (queues, expectations, followers) over the process's caches. */
async function runTerm(p: Process, signal: AbortSignal): Promise<'stopped' | 'leadership-lost'> {
  const { settings, log, client, metrics } = p;
  const manager = new Manager({
    log,
    client,
    clock: systemClock,
    caches: p.caches,
    metrics,
    leaderElection: settings.leaderElect
      ? {
          namespace: settings.namespace,
          leaseName: settings.leaseName,
          identity: settings.identity,
          leaseDurationMs: settings.leaseDurationMs,
          renewDeadlineMs: settings.renewDeadlineMs,
          retryPeriodMs: settings.retryPeriodMs,
        }
      : undefined,
  });
  const events = new EventRecorder({ client, controller: 'keyvirt.io/operator', instance: settings.identity, log, now: () => systemClock.now() });
  const ctx: ControllerContext = { manager, client, log, clock: systemClock, metrics, events, settings };
  for (const register of controllers) register(ctx);
  try {
    return await manager.run(signal);
  } finally {
    // The term's gauges read its controllers' state: the next term adds its own.
    metrics.dropSources();
  }
}

/** The probes and /metrics for the life of the process: ready once every cache has filled. */
async function startHealthServer(p: Process): Promise<HealthServer> {
  const [host = '0.0.0.0', port = '8080'] = p.settings.healthAddress.split(':');
  const [metricsHost = '127.0.0.1', metricsPort = '8081'] = p.settings.metricsAddress.split(':');
  const health = new HealthServer({
    host,
    port: Number(port),
    metricsListen: p.settings.metricsAddress === p.settings.healthAddress ? undefined : { host: metricsHost, port: Number(metricsPort) },
    log: p.log.child({ component: 'health' }),
    metrics: p.metrics,
    liveness: [{ name: 'ping', check: () => undefined }],
    readiness: [
      {
        name: 'informers-synced',
        check: () => {
          if (p.caches.kinds().length === 0) return 'no cache yet';
          const pending = p.caches.unsynced();
          return pending.length === 0 ? undefined : `not synced: ${pending.join(', ')}`;
        },
      },
    ],
  });
  await health.listen();
  return health;
}

async function main(): Promise<number> {
  const settings = readSettings(process.argv.slice(2), process.env);
  const log = pino({ level: settings.logLevel, base: { component: 'keyvirt-operator' } });
  log.info({ version: VERSION, identity: settings.identity, namespace: settings.namespace }, 'starting');
  const client = new KubeClient(await loadApiAccess(settings.kubeconfig, process.env), 'keyvirt-operator', { rateLimit: { qps: settings.apiQps, burst: settings.apiBurst } });
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.signal.aborted) {
      log.warn({ signal }, 'second signal, exiting now');
      process.exit(130);
    }
    log.info({ signal }, 'shutting down');
    stop.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (settings.subresourcesCertFile !== undefined && settings.subresourcesKeyFile !== undefined) {
    const subresources = {
      address: settings.subresourcesAddress,
      certFile: settings.subresourcesCertFile,
      keyFile: settings.subresourcesKeyFile,
      operatorNamespace: settings.namespace,
      evictionWebhookToken: settings.evictionWebhookTokenFile === undefined ? undefined : readWebhookToken(settings.evictionWebhookTokenFile),
    };
    startSubresourceServer(client, log, subresources, stop.signal).catch((err: unknown) => {
      log.fatal({ err }, 'subresource server failed');
      process.exit(1);
    });
  }
  const metrics = new OperatorMetrics();
  client.observe(metrics);
  const caches = new ManagerCaches({ log, client, sleep: sleepOn(systemClock), observer: metrics });
  const p: Process = { settings, log, client, caches, metrics };
  const health = await startHealthServer(p);
  const cachesStop = new AbortController();
  // Each informer starts as the first term's controllers ask for it.
  const cachesRun = caches.run(cachesStop.signal);
  try {
    // Losing the lease drops every controller and what it knew, and starts over as a
    // candidate with fresh ones; the caches only mirror the API server and stay.
    for (;;) {
      const exit = await runTerm(p, stop.signal);
      if (exit === 'stopped' || stop.signal.aborted) break;
      log.warn('lost the leader lease; starting over with fresh controllers');
    }
  } finally {
    cachesStop.abort();
    await cachesRun;
    await health.close();
  }
  log.info('stopped');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    pino().fatal({ err }, 'operator failed');
    process.exit(1);
  },
);

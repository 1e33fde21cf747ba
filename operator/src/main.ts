#!/usr/bin/env node
// The KeyVirt operator. Reads its settings from flags (or KEYVIRT_OPERATOR_* variables),
// connects with the kubeconfig (or in-cluster credentials), and runs until SIGTERM/SIGINT:
// the caches, the health and metrics server and the metrics for the life of the process,
// the controllers one leader term at a time (fresh controllers over the same caches after
// a lost lease).
import { pino, type Logger } from 'pino';
import { readSettings, SettingsError, VERSION, type Settings } from './settings.ts';
import { OperatorMetrics } from './metrics.ts';
import { sleepOn, systemClock, type Clock } from './runtime/clock.ts';
import { HealthServer } from './runtime/health-server.ts';
import { ManagerCaches } from './runtime/manager-caches.ts';
import { EventRecorder } from './runtime/event-recorder.ts';
import { KubeClient } from './runtime/kube-client.ts';
import { loadApiAccess } from './runtime/api-access.ts';
import { exitWhenDrained } from './runtime/process-exit.ts';
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

async function main(): Promise<void> {
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
    await client.close();
  }
  log.info('stopped');
  exitWhenDrained(0, log);
}

main().catch((err: unknown) => {
  if (err instanceof SettingsError) {
    process.stderr.write(`keyvirt-operator: ${err.message}\n`);
    process.exit(2);
  }
  pino().fatal({ err }, 'operator failed');
  process.exit(1);
});

#!/usr/bin/env node
// The KeyVirt node agent: one per node (a DaemonSet), describing the node for the
// VM scheduler. It holds Kubernetes credentials (its own ServiceAccount, allowed
// to patch nodes), which is why it lives with the operator and not in the launcher.
//
// Environment: NODE_NAME (required, from the downward API), KUBECONFIG (else the
// in-cluster service account), KEYVIRT_SYSFS_ROOT (/sys), KEYVIRT_PROC_ROOT (/proc),
// KEYVIRT_DEV_ROOT (/dev), KEYVIRT_NODE_AGENT_INTERVAL_SECONDS (60), KEYVIRT_LOG_LEVEL (info),
// KEYVIRT_SYSCTL_VM_DIR (the host's /proc/sys/vm; $KEYVIRT_PROC_ROOT/sys/vm),
// KEYVIRT_ENABLE_UNPRIVILEGED_USERFAULTFD (false: set vm.unprivileged_userfaultfd=1 so
// that the node can be a post-copy migration target, docs/adr/0057).
// Per-VM metrics (docs/adr/0069), off unless KEYVIRT_METRICS_ADDRESS (host:port of
// /metrics) is set: KEYVIRT_METRICS_KEY_FILE (the cluster's metrics key, required then),
// KEYVIRT_METRICS_INTERVAL_SECONDS (15), KEYVIRT_METRICS_TIMEOUT_SECONDS (5).
// Device plugins for /dev/kvm, /dev/net/tun, /dev/vhost-net (docs/adr/0079), on unless
// KEYVIRT_DEVICE_PLUGINS=false: KEYVIRT_DEVICE_PLUGIN_DIR (the kubelet's device-plugins
// directory, /var/lib/kubelet/device-plugins), KEYVIRT_DEVICE_PLUGIN_UNITS (110 per device).
// Pod network set-up of launcher pods (docs/adr/0094), off unless KEYVIRT_POD_NETWORK=true
// (then privileged: it enters pods' network namespaces through KEYVIRT_PROC_ROOT):
// KEYVIRT_POD_NETWORK_INTERVAL_MS (1000), KEYVIRT_LAUNCHER_UID (0, the taps' owner).
// Held launchers (docs/adr/0134), off unless KEYVIRT_HELD_LAUNCHERS=true (then privileged:
// it reaches pods' files through KEYVIRT_PROC_ROOT/<pid>/root and listens in their network
// namespaces): the launchers of this node's pods whose PID 1 holds QEMU, every
// KEYVIRT_HELD_LAUNCHERS_INTERVAL_MS (500).
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { readFile } from 'node:fs/promises';
import { loadApiAccess } from '../runtime/api-access.ts';
import { HealthServer } from '../runtime/health-server.ts';
import { KubeClient } from '../runtime/kube-client.ts';
import { DEFAULT_UNITS, MAX_UNITS } from './device-plugin/devices.ts';
import { runDevicePlugins } from './device-plugin/device-plugins.ts';
import { DEFAULT_DEVICE_PLUGIN_DIR } from './device-plugin/protocol.ts';
import { kubeLauncherPodApi, kubeNodeApi, NODE_AGENT_FIELD_MANAGER, nodeApiWithoutAccess } from './kube-node-api.ts';
import { HeldLaunchers, runHeldLaunchers, type HeldLauncherOptions } from './held/held-launchers.ts';
import { guardHeldVms } from './held/held-safety-net.ts';
import type { SafetyNet } from '@keyvirt/launcher/held';
import { HOST_ROOTS, runNodeAgent } from './node-agent.ts';
import { kubePodNetworkApi, runPodNetworkSetup } from './network/pod-network-controller.ts';
import { VmMetricsExposition } from './vm-metrics-exposition.ts';
import { runVmMetrics } from './vm-metrics-loop.ts';

const Env = z.object({
  NODE_NAME: z.string().min(1, { error: 'NODE_NAME must name this node' }),
  KEYVIRT_SYSFS_ROOT: z.string().default(HOST_ROOTS.sysfs),
  KEYVIRT_PROC_ROOT: z.string().default(HOST_ROOTS.procfs),
  KEYVIRT_DEV_ROOT: z.string().default(HOST_ROOTS.dev),
  KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: z.coerce.number().min(1).max(3600).default(60),
  KEYVIRT_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  KEYVIRT_SYSCTL_VM_DIR: z.string().min(1).optional(),
  KEYVIRT_ENABLE_UNPRIVILEGED_USERFAULTFD: z.enum(['true', 'false'], { error: 'KEYVIRT_ENABLE_UNPRIVILEGED_USERFAULTFD must be true or false' }).default('false'),
  KEYVIRT_METRICS_ADDRESS: z.string().regex(/^[^:]+:\d+$/, { error: 'KEYVIRT_METRICS_ADDRESS must be host:port' }).optional(),
  KEYVIRT_METRICS_KEY_FILE: z.string().min(1).optional(),
  KEYVIRT_METRICS_INTERVAL_SECONDS: z.coerce.number().min(1).max(3600).default(15),
  KEYVIRT_METRICS_TIMEOUT_SECONDS: z.coerce.number().min(0.1).max(60).default(5),
  KEYVIRT_DEVICE_PLUGINS: z.enum(['true', 'false'], { error: 'KEYVIRT_DEVICE_PLUGINS must be true or false' }).default('true'),
  KEYVIRT_DEVICE_PLUGIN_DIR: z.string().min(1).default(DEFAULT_DEVICE_PLUGIN_DIR),
  KEYVIRT_POD_NETWORK: z.enum(['true', 'false'], { error: 'KEYVIRT_POD_NETWORK must be true or false' }).default('false'),
  KEYVIRT_POD_NETWORK_INTERVAL_MS: z.coerce.number().int().min(100).max(60_000).default(1000),
  KEYVIRT_HELD_LAUNCHERS: z.enum(['true', 'false'], { error: 'KEYVIRT_HELD_LAUNCHERS must be true or false' }).default('false'),
  KEYVIRT_HELD_LAUNCHERS_INTERVAL_MS: z.coerce.number().int().min(100).max(60_000).default(500),
  KEYVIRT_LAUNCHER_UID: z.coerce.number().int().min(0).max(2_147_483_647).default(0),
  KEYVIRT_DEVICE_PLUGIN_UNITS: z.coerce
    .number()
    .int()
    .min(1, { error: 'KEYVIRT_DEVICE_PLUGIN_UNITS must be at least 1' })
    .max(MAX_UNITS, { error: `KEYVIRT_DEVICE_PLUGIN_UNITS must be at most ${MAX_UNITS}` })
    .default(DEFAULT_UNITS),
});

class MetricsConfigError extends Error {
  override readonly name = 'MetricsConfigError';
}

/** Starts the per-VM metrics pass and its /metrics listener when KEYVIRT_METRICS_ADDRESS is set; resolves when stopped. */
async function runMetrics(env: z.infer<typeof Env>, client: KubeClient, log: Logger, net: SafetyNet, signal: AbortSignal): Promise<void> {
  if (env.KEYVIRT_METRICS_ADDRESS === undefined) return;
  if (env.KEYVIRT_METRICS_KEY_FILE === undefined) throw new MetricsConfigError('KEYVIRT_METRICS_KEY_FILE must name the metrics key when KEYVIRT_METRICS_ADDRESS is set');
  const key = Buffer.from((await readFile(env.KEYVIRT_METRICS_KEY_FILE, 'utf8')).trim(), 'utf8');
  if (key.length < 32) throw new MetricsConfigError(`the metrics key in ${env.KEYVIRT_METRICS_KEY_FILE} is shorter than 32 bytes`);
  const [host = '127.0.0.1', port = '9464'] = env.KEYVIRT_METRICS_ADDRESS.split(':');
  const exposition = new VmMetricsExposition(env.NODE_NAME, { uncaughtErrors: () => net.survived });
  const metricsLog = log.child({ component: 'vm-metrics' });
  const server = new HealthServer({ host, port: Number(port), log: metricsLog, liveness: [], readiness: [], metrics: exposition });
  const bound = await server.listen();
  metricsLog.info({ host, port: bound }, 'serving per-VM metrics');
  try {
    await runVmMetrics(
      {
        api: kubeLauncherPodApi(client),
        node: env.NODE_NAME,
        key,
        intervalMs: env.KEYVIRT_METRICS_INTERVAL_SECONDS * 1000,
        timeoutMs: env.KEYVIRT_METRICS_TIMEOUT_SECONDS * 1000,
        concurrency: 8,
        exposition,
        log: metricsLog,
      },
      signal,
    );
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  const env = Env.parse(process.env);
  const log = pino({ name: 'keyvirt-node-agent', level: env.KEYVIRT_LOG_LEVEL });
  // The operator's client and API access (KUBECONFIG, ~/.kube/config, else the pod's
  // service account). The device plugins need no API server: without access the agent
  // still serves them, and says what it does not do.
  const client = await loadApiAccess(undefined, process.env).then(
    (access) => new KubeClient(access, NODE_AGENT_FIELD_MANAGER),
    (err: unknown) => {
      log.error({ err }, 'no API access: the node is not described, per-VM metrics and pod networks are off; the device plugins still run');
      return undefined;
    },
  );
  const controller = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping');
      controller.abort();
    });
  }
  const postCopy = {
    sysctlVmDir: env.KEYVIRT_SYSCTL_VM_DIR ?? join(env.KEYVIRT_PROC_ROOT, 'sys/vm'),
    enable: env.KEYVIRT_ENABLE_UNPRIVILEGED_USERFAULTFD === 'true',
  };
  const heldOptions: HeldLauncherOptions | undefined =
    env.KEYVIRT_HELD_LAUNCHERS === 'true' && client !== undefined
      ? { api: kubeLauncherPodApi(client), node: env.NODE_NAME, procRoot: env.KEYVIRT_PROC_ROOT, intervalMs: env.KEYVIRT_HELD_LAUNCHERS_INTERVAL_MS, log: log.child({ component: 'held-launchers' }) }
      : undefined;
  const held = heldOptions === undefined ? undefined : new HeldLaunchers(heldOptions);
  const net = guardHeldVms(held, log.child({ component: 'safety-net' }));
  log.info({ node: env.NODE_NAME, postCopy }, 'node agent starting');
  await Promise.all([
    client === undefined ? Promise.resolve() : runMetrics(env, client, log, net, controller.signal),
    env.KEYVIRT_DEVICE_PLUGINS === 'true'
      ? runDevicePlugins(
          { pluginDir: env.KEYVIRT_DEVICE_PLUGIN_DIR, devRoot: env.KEYVIRT_DEV_ROOT, units: env.KEYVIRT_DEVICE_PLUGIN_UNITS, log: log.child({ component: 'device-plugins' }) },
          controller.signal,
        )
      : Promise.resolve(),
    env.KEYVIRT_POD_NETWORK === 'true' && client !== undefined
      ? runPodNetworkSetup(
          {
            api: kubePodNetworkApi(client), node: env.NODE_NAME, procRoot: env.KEYVIRT_PROC_ROOT, launcherUid: env.KEYVIRT_LAUNCHER_UID,
            intervalMs: env.KEYVIRT_POD_NETWORK_INTERVAL_MS, log: log.child({ component: 'pod-network' }),
          },
          controller.signal,
        )
      : Promise.resolve(),
    heldOptions === undefined || held === undefined ? Promise.resolve() : runHeldLaunchers(heldOptions, controller.signal, held),
    runNodeAgent(
      {
        // Without access every pass still reads (and prepares) the host, then logs why the node was not described.
        api: client === undefined ? nodeApiWithoutAccess() : kubeNodeApi(client),
        nodeName: env.NODE_NAME,
        roots: { sysfs: env.KEYVIRT_SYSFS_ROOT, procfs: env.KEYVIRT_PROC_ROOT, dev: env.KEYVIRT_DEV_ROOT },
        intervalMs: env.KEYVIRT_NODE_AGENT_INTERVAL_SECONDS * 1000,
        log,
        postCopy,
      },
      controller.signal,
    ),
  ]);
  // The API connection pool closes before the exit (ADR 0140). The exit itself does not
  // wait for the loop to drain: the held VMs' QMP, guest-agent and API connections stay
  // open on purpose, for the next agent to adopt (ADR 0135).
  await client?.close();
  log.info('node agent stopped');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    pino({ name: 'keyvirt-node-agent' }).fatal({ err }, 'node agent failed');
    process.exit(1);
  },
);

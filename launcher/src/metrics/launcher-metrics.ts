// Wires the metrics route of one launcher: a collector over the supervised VM and the
// two tokens that open GET /v1/metrics (ADR 0069).
import path from 'node:path';
import type { Logger } from 'pino';
import type { LauncherConfig } from '../api/config.ts';
import { METRICS_TOKEN_FILE_NAME } from '../api/vm-metrics.ts';
import { bearerTokenCheck } from '../http/auth.ts';
import type { VmSupervisor } from '../supervisor/supervisor.ts';
import { VmMetricsCollector } from './collector.ts';
import { readMetricsTokenCheck, type MetricsRouteDeps } from './metrics-route.ts';

export interface LauncherMetricsOptions {
  supervisor: VmSupervisor;
  config: LauncherConfig;
  guestMiB: number;
  token: string;
  logger: Logger;
  /** Where the metrics token is read: beside the API token file when undefined, nowhere when null. */
  metricsTokenFile?: string | null | undefined;
}

/** The metrics route's dependencies; the metrics token is read from `metrics-token` beside the API token file. */
export async function launcherMetrics(options: LauncherMetricsOptions): Promise<MetricsRouteDeps> {
  const { supervisor, config } = options;
  const collector = new VmMetricsCollector({
    vm: {
      get phase(): string {
        return supervisor.phase;
      },
      get qmp(): VmSupervisor['qmp'] {
        return supervisor.qmp;
      },
      get agentClient(): VmSupervisor['agentClient'] {
        return supervisor.agentClient;
      },
      get qemuPid(): number | undefined {
        // QEMU held by the pod (ADR 0131): its pid is the pod's, another process's here.
        return config.qemu.host === 'pod' ? undefined : supervisor.status.qemu.pid;
      },
    },
    identity: config.vm,
    guestBytes: options.guestMiB * 1024 * 1024,
    interfaces: config.template.interfaces,
    log: options.logger.child({ component: 'metrics' }),
  });
  return {
    collect: () => collector.collect(),
    apiToken: bearerTokenCheck(options.token),
    metricsToken:
      options.metricsTokenFile === null ? undefined : await readMetricsTokenCheck(options.metricsTokenFile ?? path.join(path.dirname(config.tokenFile), METRICS_TOKEN_FILE_NAME)),
  };
}

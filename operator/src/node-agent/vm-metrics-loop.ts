// The node agent's per-VM metrics pass (ADR 0069): every interval, list the launcher
// pods of this node, read each launcher's /v1/metrics (a few at a time, each under a
// deadline) and hand the readings to the exposition. A pass costs the launchers one
// request each whatever the number of Prometheus scrapes of /metrics.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { listLauncherTargets, type LauncherPodApi, type LauncherTarget } from './launcher-pods.ts';
import { LauncherScrapeError, scrapeLauncher } from './launcher-scrape.ts';
import type { LauncherReading, VmMetricsExposition } from './vm-metrics-exposition.ts';

export interface VmMetricsOptions {
  readonly api: LauncherPodApi;
  readonly node: string;
  /** The cluster's metrics key (the Secret keyvirt-metrics-key). */
  readonly key: Buffer;
  readonly intervalMs: number;
  /** Deadline of one launcher read. */
  readonly timeoutMs: number;
  /** Launchers read at once. */
  readonly concurrency: number;
  readonly exposition: VmMetricsExposition;
  readonly log: Logger;
}

async function readOne(o: VmMetricsOptions, target: LauncherTarget): Promise<LauncherReading> {
  try {
    return { target, metrics: await scrapeLauncher(target, o.key, o.timeoutMs) };
  } catch (err) {
    const failure = err instanceof LauncherScrapeError ? err.reason : 'invalid';
    o.log.debug({ err, namespace: target.namespace, vm: target.name, pod: target.pod }, 'launcher metrics read failed');
    return { target, failure };
  }
}

/** One pass over the launchers of the node; throws when the pod list cannot be read. */
export async function readLaunchers(o: VmMetricsOptions): Promise<LauncherReading[]> {
  const targets = await listLauncherTargets(o.api, o.node);
  const readings: LauncherReading[] = new Array<LauncherReading>(targets.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length) {
      const i = next++;
      const target = targets[i];
      if (target !== undefined) readings[i] = await readOne(o, target);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, targets.length)) }, worker));
  return readings;
}

/** Reads the launchers now and every `intervalMs` until `signal` aborts; a failed pod list keeps the last readings. */
export async function runVmMetrics(o: VmMetricsOptions, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const readings = await readLaunchers(o);
      o.exposition.update(readings);
      const failed = readings.filter((r) => r.failure !== undefined).length;
      if (failed > 0) o.log.info({ launchers: readings.length, failed }, 'some launchers did not answer');
      else o.log.debug({ launchers: readings.length }, 'launcher metrics read');
    } catch (err) {
      o.log.error({ err, node: o.node }, 'cannot list the launcher pods of this node');
    }
    try {
      await sleep(o.intervalMs, undefined, { signal });
    } catch {
      return;
    }
  }
}

// The operator's memory over a benchmark, by phase: its resident set from /proc every
// 500 ms, and V8's heap (used, and reserved from the system) and the memory outside it
// (array buffers, sockets' buffers …) from the operator's /metrics every 2 s. A phase's
// peak says what a high-water mark of the RSS was made of.
import { setTimeout as sleep } from 'node:timers/promises';
import { metricValue } from './operator-metrics-text.ts';
import { procStats } from './process-cpu.ts';

export interface MemoryPeaks {
  rssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
}

const MIB = 1024 * 1024;
const RSS_EVERY_MS = 500;
const METRICS_EVERY_MS = 2000;

function empty(): MemoryPeaks {
  return { rssMiB: 0, heapUsedMiB: 0, heapTotalMiB: 0, externalMiB: 0 };
}

export class OperatorMemorySamples {
  readonly #pid: number;
  readonly #metrics: () => Promise<string>;
  readonly #peaks = new Map<string, MemoryPeaks>();
  #phase = 'start';

  constructor(pid: number, metrics: () => Promise<string>) {
    this.#pid = pid;
    this.#metrics = metrics;
  }

  /** Samples from now on count for `name`. */
  phase(name: string): void {
    this.#phase = name;
  }

  /** The highest samples of a phase (zeros when none was taken). */
  peaks(name: string): MemoryPeaks {
    return this.#peaks.get(name) ?? empty();
  }

  /** Samples until `signal` aborts; a failed read is skipped (the process may be gone). */
  async run(signal: AbortSignal): Promise<void> {
    let sinceMetrics = METRICS_EVERY_MS;
    while (!signal.aborted) {
      const peak = this.#peaks.get(this.#phase) ?? empty();
      this.#peaks.set(this.#phase, peak);
      const stats = await procStats(this.#pid).catch(() => undefined);
      if (stats !== undefined) peak.rssMiB = Math.max(peak.rssMiB, stats.rssMiB);
      if (sinceMetrics >= METRICS_EVERY_MS) {
        sinceMetrics = 0;
        const text = await this.#metrics().catch(() => '');
        const mib = (name: string): number => (metricValue(text, `keyvirt_operator_nodejs_${name}`) ?? 0) / MIB;
        peak.heapUsedMiB = Math.max(peak.heapUsedMiB, mib('heap_size_used_bytes'));
        peak.heapTotalMiB = Math.max(peak.heapTotalMiB, mib('heap_size_total_bytes'));
        peak.externalMiB = Math.max(peak.externalMiB, mib('external_memory_bytes'));
      }
      await sleep(RSS_EVERY_MS, undefined, { signal }).catch(() => undefined);
      sinceMetrics += RSS_EVERY_MS;
    }
  }
}

/** BENCH fields of a phase's peaks: `<phase>_peak_rss_mib=… <phase>_peak_heap_used_mib=…`. */
export function memoryFields(phase: string, p: MemoryPeaks): string {
  return (
    `${phase}_peak_rss_mib=${p.rssMiB.toFixed(1)} ${phase}_peak_heap_used_mib=${p.heapUsedMiB.toFixed(1)} ` +
    `${phase}_peak_heap_total_mib=${p.heapTotalMiB.toFixed(1)} ${phase}_peak_external_mib=${p.externalMiB.toFixed(1)}`
  );
}

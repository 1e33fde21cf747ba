// The continuous double-run checker of the HA fault suites: from `start` to `stop` it
// watches one VM every ~50 ms from a worker thread — every QEMU process of the VM on
// any node of this host, and the record stream on its disk — and reports (with the
// windows) every time two runnable QEMUs of the VM lived at once beyond the kill
// latency, or an older boot id wrote to the disk after a newer one. Rules: double-run-judge.ts.
import { Worker } from 'node:worker_threads';
import { LEASE_KILL_LATENCY_MS } from '../../launcher/src/api/config.ts';
import type { DoubleRunReport } from './double-run-judge.ts';

export type { DoubleRunReport, OverlapWindow } from './double-run-judge.ts';

export interface DoubleRunTarget {
  readonly namespace: string;
  readonly name: string;
  /** Host path of the VM's raw disk that the test guest writes its records to. */
  readonly disk?: string;
  readonly intervalMs?: number;
  /** How long two runnable QEMUs may overlap (the old one's kill after a thaw). */
  readonly killLatencyMs?: number;
}

export class DoubleRunCheckerError extends Error {
  override readonly name = 'DoubleRunCheckerError';
}

/** Default overlap allowance: K of the lease's safety inequality (ADR 0063), the time from the fence decision to QEMU gone. */
export const DEFAULT_KILL_LATENCY_MS = LEASE_KILL_LATENCY_MS;

export class DoubleRunChecker {
  readonly #worker: Worker;
  #stopped: Promise<DoubleRunReport> | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  static start(target: DoubleRunTarget): DoubleRunChecker {
    const worker = new Worker(new URL('./double-run-worker.ts', import.meta.url), {
      workerData: {
        guestName: `${target.namespace}_${target.name}`,
        disk: target.disk,
        intervalMs: target.intervalMs ?? 50,
        killLatencyMs: target.killLatencyMs ?? DEFAULT_KILL_LATENCY_MS,
      },
    });
    worker.unref();
    return new DoubleRunChecker(worker);
  }

  #ask(what: 'report' | 'stop'): Promise<DoubleRunReport> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new DoubleRunCheckerError('the double-run checker failed', { cause: err }));
      this.#worker.once('error', onError);
      this.#worker.once('message', (report: DoubleRunReport) => {
        this.#worker.off('error', onError);
        resolve(report);
      });
      this.#worker.postMessage(what);
    });
  }

  /** The report so far; the checker keeps watching. */
  report(): Promise<DoubleRunReport> {
    if (this.#stopped !== undefined) return this.#stopped;
    return this.#ask('report');
  }

  /** Takes a last sample, stops watching and returns the final report. */
  stop(): Promise<DoubleRunReport> {
    this.#stopped ??= this.#ask('stop').finally(() => void this.#worker.terminate());
    return this.#stopped;
  }
}

/** A one-paragraph account of a report for assertion messages and logs. */
export function describeDoubleRuns(report: DoubleRunReport): string {
  const qemus = report.qemus.map((q) => `${q.pid}@${q.node ?? '?'}`).join(' ');
  const overlaps = report.overlaps.map((w) => `${Math.round(w.durationMs)} ms [${w.pids.join(',')}]`).join(' ');
  return `${report.samples} samples (max gap ${report.maxSampleGapMs} ms); QEMUs ${qemus || 'none'}; overlaps ${overlaps || 'none'}`
    + ` (allowed ${report.killLatencyMs} ms); boot ids ${report.bootIds.join(' → ') || 'none'}; disk read failures ${report.diskReadFailures}`
    + (report.violations.length > 0 ? `; VIOLATIONS: ${report.violations.join('; ')}` : '');
}

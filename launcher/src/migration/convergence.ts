// The convergence policy of a running migration, as a pure state machine fed with
// samples of QEMU's progress. It follows oVirt's convergence schedule: the
// downtime limit starts at the schedule's first step and is raised one step after
// each run of stalled iterations (an iteration whose remaining data is not below
// the lowest remaining data seen at any earlier iteration boundary). When the
// schedule is exhausted, or the completion timeout (per GiB of guest memory)
// passes, the migration switches to post-copy if the policy allows it; otherwise
// the completion timeout aborts it. A separate progress timeout aborts a
// migration whose remaining data stops shrinking altogether (a stuck stream).
import type { MigrationPolicy } from '../api/migration.ts';

const GiB = 1024 ** 3;

export interface ConvergenceSample {
  /** Milliseconds since the migration command was issued. */
  readonly elapsedMs: number;
  /** QEMU migration status (setup, active, postcopy-active, …). */
  readonly status: string;
  /** QEMU's dirty-sync-count: the pass over guest memory now running. */
  readonly iteration: number;
  readonly remainingBytes: number;
  readonly totalBytes: number;
}

export type PostCopyCause = 'DowntimeScheduleExhausted' | 'CompletionTimeout';

export type ConvergenceAction =
  | { readonly kind: 'setDowntime'; readonly downtimeMs: number; readonly stalledIterations: number }
  | { readonly kind: 'startPostCopy'; readonly cause: PostCopyCause }
  | { readonly kind: 'abort'; readonly reason: 'ProgressTimeout' | 'CompletionTimeout'; readonly message: string };

export class ConvergenceSchedule {
  readonly #policy: MigrationPolicy;
  #step = 0;
  #stalledIterations = 0;
  #lastIteration = 0;
  #lowmark: number | null = null;
  #lastRemaining: number | null = null;
  #lastProgressAtMs = 0;
  #postCopyRequested = false;
  #done = false;

  constructor(policy: MigrationPolicy) {
    this.#policy = policy;
  }

  /** The downtime limit to set before the migration starts. */
  initialDowntimeMs(): number {
    return this.currentDowntimeMs();
  }

  currentDowntimeMs(): number {
    const steps = this.#policy.downtimeScheduleMs;
    return steps[Math.min(this.#step, steps.length - 1)] ?? steps[0] ?? 300;
  }

  stalledIterations(): number {
    return this.#stalledIterations;
  }

  postCopyRequested(): boolean {
    return this.#postCopyRequested;
  }

  /** Feeds one sample; returns what the driver should do now (often nothing). */
  observe(sample: ConvergenceSample): ConvergenceAction[] {
    if (this.#done) return [];
    this.#trackProgress(sample);
    if (sample.status !== 'active') return [];
    const actions: ConvergenceAction[] = [];
    if (sample.iteration > this.#lastIteration) actions.push(...this.#onNewIteration(sample));
    actions.push(...this.#checkTimeouts(sample));
    if (actions.some((a) => a.kind === 'abort')) this.#done = true;
    return actions;
  }

  #trackProgress(sample: ConvergenceSample): void {
    const advanced = sample.iteration > this.#lastIteration;
    if (this.#lastRemaining === null || sample.remainingBytes < this.#lastRemaining || advanced) {
      this.#lastProgressAtMs = sample.elapsedMs;
    }
    this.#lastRemaining = sample.remainingBytes;
  }

  #onNewIteration(sample: ConvergenceSample): ConvergenceAction[] {
    this.#lastIteration = sample.iteration;
    if (this.#lowmark === null || sample.remainingBytes < this.#lowmark) {
      this.#lowmark = sample.remainingBytes;
      return [];
    }
    this.#stalledIterations += 1;
    if (this.#stalledIterations % this.#policy.stalledIterationsPerStep !== 0) return [];
    const steps = this.#policy.downtimeScheduleMs;
    if (this.#step + 1 < steps.length) {
      this.#step += 1;
      return [{ kind: 'setDowntime', downtimeMs: this.currentDowntimeMs(), stalledIterations: this.#stalledIterations }];
    }
    return this.#postCopy('DowntimeScheduleExhausted');
  }

  #checkTimeouts(sample: ConvergenceSample): ConvergenceAction[] {
    if (this.#postCopyRequested) return [];
    const completionMs = this.completionTimeoutMs(sample.totalBytes);
    if (sample.elapsedMs > completionMs) {
      const postCopy = this.#postCopy('CompletionTimeout');
      if (postCopy.length > 0) return postCopy;
      return [
        {
          kind: 'abort',
          reason: 'CompletionTimeout',
          message: `not completed within ${completionMs} ms (${this.#policy.completionTimeoutPerGiBSeconds} s per GiB)`,
        },
      ];
    }
    const stuckMs = sample.elapsedMs - this.#lastProgressAtMs;
    if (stuckMs > this.#policy.progressTimeoutSeconds * 1000) {
      return [
        {
          kind: 'abort',
          reason: 'ProgressTimeout',
          message: `remaining data did not shrink for ${stuckMs} ms`,
        },
      ];
    }
    return [];
  }

  #postCopy(cause: PostCopyCause): ConvergenceAction[] {
    if (!this.#policy.postCopy || this.#postCopyRequested) return [];
    this.#postCopyRequested = true;
    return [{ kind: 'startPostCopy', cause }];
  }

  /** Completion timeout for a guest of this memory size (KubeVirt's per-GiB rule, fractional GiB). */
  completionTimeoutMs(totalBytes: number): number {
    const gib = Math.max(totalBytes, 1) / GiB;
    return Math.round(this.#policy.completionTimeoutPerGiBSeconds * 1000 * gib);
  }
}

// The double-run judge: pure rules over a stream of samples of one VM, each sample the
// VM's QEMU processes (frozen or not, dying or not) and the boot ids and counters of
// the records on its disk. Two rules, either broken fails the run:
//  1. never two runnable (alive, not frozen, not dying) QEMUs of the VM for longer than
//     the kill latency (the old QEMU of a thawed node must be killed within it);
//  2. the disk's writers never interleave: once records of a newer boot id have been
//     written, no older boot id's counter ever grows again.
// Sampling lives in double-run-sampler.ts, the loop in double-run-worker.ts.

export interface QemuSample {
  readonly pid: number;
  /** The simulated node whose freezer group holds the process, when it is a node's. */
  readonly node: string | undefined;
  readonly frozen: boolean;
  /** Exiting: zombie, or SIGKILL pending (it never returns to user space). */
  readonly dying: boolean;
}

export interface DiskSample {
  /** Highest counter per boot id among the records on the disk. */
  readonly maxCounter: ReadonlyMap<string, number>;
}

export interface Sample {
  /** Epoch milliseconds (performance.timeOrigin + performance.now()). */
  readonly atMs: number;
  readonly qemus: readonly QemuSample[];
  /** Undefined when the disk could not be read this time (missing, or no disk watched). */
  readonly disk: DiskSample | undefined;
}

export interface OverlapWindow {
  readonly startMs: number;
  /** Undefined while still open. */
  readonly endMs: number | undefined;
  readonly durationMs: number;
  readonly pids: readonly number[];
  readonly nodes: readonly string[];
}

export interface Interleaving {
  readonly atMs: number;
  /** The boot id that wrote again … */
  readonly staleBootId: string;
  readonly staleCounter: number;
  /** … after this one had written. */
  readonly newerBootId: string;
}

export interface QemuSeen {
  readonly pid: number;
  readonly node: string | undefined;
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  /** Last time it was seen runnable (alive, not frozen, not dying). */
  readonly lastRunnableMs: number | undefined;
}

export interface DoubleRunReport {
  readonly samples: number;
  readonly firstSampleMs: number | undefined;
  readonly lastSampleMs: number | undefined;
  /** Longest time between two samples: how blind the checker was at worst. */
  readonly maxSampleGapMs: number;
  readonly killLatencyMs: number;
  readonly qemus: readonly QemuSeen[];
  /** Every time two or more runnable QEMUs of the VM were seen at once, however short. */
  readonly overlaps: readonly OverlapWindow[];
  /** Boot ids in the order they were first seen writing. */
  readonly bootIds: readonly string[];
  readonly interleavings: readonly Interleaving[];
  readonly diskReadFailures: number;
  /** Human-readable broken rules (empty: no double run). */
  readonly violations: readonly string[];
}

export class DoubleRunJudge {
  readonly #killLatencyMs: number;
  #samples = 0;
  #first: number | undefined;
  #last: number | undefined;
  #maxGap = 0;
  readonly #qemus = new Map<number, { node: string | undefined; firstSeenMs: number; lastSeenMs: number; lastRunnableMs: number | undefined }>();
  readonly #overlaps: OverlapWindow[] = [];
  #open: { startMs: number; pids: Set<number>; nodes: Set<string> } | undefined;
  #maxCounter = new Map<string, number>();
  #diskSeen = false;
  /** Boot ids in the order of their first write seen. */
  readonly #writers: string[] = [];
  readonly #interleavings: Interleaving[] = [];
  #diskReadFailures = 0;

  constructor(killLatencyMs: number) {
    this.#killLatencyMs = killLatencyMs;
  }

  add(sample: Sample): void {
    this.#samples += 1;
    if (this.#last !== undefined) this.#maxGap = Math.max(this.#maxGap, sample.atMs - this.#last);
    this.#first ??= sample.atMs;
    this.#last = sample.atMs;
    this.#addQemus(sample);
    this.#addDisk(sample);
  }

  #addQemus(sample: Sample): void {
    const runnable = sample.qemus.filter((q) => !q.frozen && !q.dying);
    for (const q of sample.qemus) {
      const seen = this.#qemus.get(q.pid) ?? { node: q.node, firstSeenMs: sample.atMs, lastSeenMs: sample.atMs, lastRunnableMs: undefined };
      seen.lastSeenMs = sample.atMs;
      if (!q.frozen && !q.dying) seen.lastRunnableMs = sample.atMs;
      this.#qemus.set(q.pid, seen);
    }
    if (runnable.length >= 2) {
      this.#open ??= { startMs: sample.atMs, pids: new Set(), nodes: new Set() };
      for (const q of runnable) {
        this.#open.pids.add(q.pid);
        if (q.node !== undefined) this.#open.nodes.add(q.node);
      }
    } else if (this.#open !== undefined) {
      this.#overlaps.push(closeWindow(this.#open, sample.atMs));
      this.#open = undefined;
    }
  }

  #addDisk(sample: Sample): void {
    if (sample.disk === undefined) {
      this.#diskReadFailures += 1;
      return;
    }
    const before = this.#maxCounter;
    const firstRead = !this.#diskSeen;
    this.#diskSeen = true;
    this.#maxCounter = new Map(sample.disk.maxCounter);
    if (firstRead) return; // records already there when watching began: nobody is seen writing them
    // Writers in the order they first wrote, as known before this sample: within one
    // sample the order of two writers is unknown, so only earlier samples can convict.
    const known = [...this.#writers];
    for (const [bootId, n] of sample.disk.maxCounter) {
      const previous = before.get(bootId);
      if (previous !== undefined && n <= previous) continue;
      const at = known.indexOf(bootId);
      if (at >= 0 && at < known.length - 1) {
        this.#interleavings.push({ atMs: sample.atMs, staleBootId: bootId, staleCounter: n, newerBootId: known[known.length - 1] ?? '' });
      }
      if (!this.#writers.includes(bootId)) this.#writers.push(bootId);
    }
  }

  report(): DoubleRunReport {
    const overlaps = [...this.#overlaps];
    if (this.#open !== undefined && this.#last !== undefined) overlaps.push(closeWindow(this.#open, this.#last, true));
    const violations: string[] = [];
    for (const w of overlaps) {
      if (w.durationMs > this.#killLatencyMs) {
        violations.push(`two runnable QEMUs (pids ${w.pids.join(', ')} on ${w.nodes.join(', ') || 'unknown nodes'}) for ${Math.round(w.durationMs)} ms`
          + ` from ${new Date(w.startMs).toISOString()}${w.endMs === undefined ? ' (still)' : ''}, beyond the kill latency of ${this.#killLatencyMs} ms`);
      }
    }
    for (const i of this.#interleavings) {
      violations.push(`boot ${i.staleBootId} wrote record n=${i.staleCounter} at ${new Date(i.atMs).toISOString()} after boot ${i.newerBootId} had written`);
    }
    return {
      samples: this.#samples,
      firstSampleMs: this.#first,
      lastSampleMs: this.#last,
      maxSampleGapMs: Math.round(this.#maxGap),
      killLatencyMs: this.#killLatencyMs,
      qemus: [...this.#qemus].map(([pid, q]) => ({ pid, ...q })),
      overlaps,
      bootIds: [...this.#writers],
      interleavings: [...this.#interleavings],
      diskReadFailures: this.#diskReadFailures,
      violations,
    };
  }
}

function closeWindow(open: { startMs: number; pids: Set<number>; nodes: Set<string> }, endMs: number, stillOpen = false): OverlapWindow {
  return {
    startMs: open.startMs,
    endMs: stillOpen ? undefined : endMs,
    durationMs: endMs - open.startMs,
    pids: [...open.pids],
    nodes: [...open.nodes],
  };
}

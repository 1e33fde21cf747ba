// Migrations this controller admitted past the parallel limits whose status the cache
// does not show yet. The controller's workers reconcile several Pending migrations at
// once, and each reads a cache in which the others are still Pending: counted from the
// cache alone, three migrations leaving one node would all be admitted under a limit of
// two (seen on a drain of three VMs). An admission is recorded before its status write
// is sent and counted with the cache's active migrations until the cache shows the
// migration past Pending, or no longer holds it.
export interface Admitted {
  readonly sourceNode: string;
}

/** How long an admission counts with no sign of it in the cache (its write was lost). */
const ADMISSION_TTL_MS = 60_000;

export class AdmissionLedger {
  readonly #admitted = new Map<string, { sourceNode: string; at: number }>();

  /**
   * The admissions of migrations other than `uid` that still count: `cachedPhase` gives a
   * migration's phase in the cache (`'Pending'` without a status), or undefined when the
   * cache no longer holds it.
   */
  others(uid: string, cachedPhase: (uid: string) => string | undefined, now: number): Admitted[] {
    const out: Admitted[] = [];
    for (const [other, entry] of this.#admitted) {
      if (cachedPhase(other) !== 'Pending' || now - entry.at > ADMISSION_TTL_MS) {
        this.#admitted.delete(other);
        continue;
      }
      if (other !== uid) out.push({ sourceNode: entry.sourceNode });
    }
    return out;
  }

  admit(uid: string, sourceNode: string, now: number): void {
    this.#admitted.set(uid, { sourceNode, at: now });
  }

  forget(uid: string): void {
    this.#admitted.delete(uid);
  }

  /** Admissions held (what must not grow with every migration ever admitted). */
  get size(): number {
    return this.#admitted.size;
  }
}

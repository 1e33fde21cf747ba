// An informer's index: the cache keys filed under each value an index function gives an
// object (e.g. the launcher pods of one VM under `namespace/vm-name`), kept in step with
// every change to the cache so that "the objects with this value" reads no other object.
/** An index: the keys an object is found under (e.g. `namespace/vm-name`). */
export type IndexFunction<T> = (obj: T) => readonly string[];

/** Ordered sets of cache keys per index value. */
export class Index<T> {
  readonly #fn: IndexFunction<T>;
  readonly #byValue = new Map<string, Set<string>>();

  constructor(fn: IndexFunction<T>) {
    this.#fn = fn;
  }

  update(key: string, old: T | undefined, obj: T | undefined): void {
    const before = old === undefined ? [] : this.#fn(old);
    const after = obj === undefined ? [] : this.#fn(obj);
    for (const v of before) {
      if (after.includes(v)) continue;
      const keys = this.#byValue.get(v);
      keys?.delete(key);
      if (keys?.size === 0) this.#byValue.delete(v);
    }
    for (const v of after) {
      let keys = this.#byValue.get(v);
      if (keys === undefined) {
        keys = new Set();
        this.#byValue.set(v, keys);
      }
      keys.add(key);
    }
  }

  keys(value: string): ReadonlySet<string> {
    return this.#byValue.get(value) ?? new Set();
  }
}

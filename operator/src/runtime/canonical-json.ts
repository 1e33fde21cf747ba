// Key-order-free comparison of JSON values: an object parsed from the API server (its
// schema's key order, or the server's) equals the same object as computed here. Lists
// keep their order.

/** JSON with every object's keys sorted. */
export function canonicalJson(value: unknown): string | undefined {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** Two JSON values say the same whatever the order of their objects' keys. */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

// Kubernetes resource quantities ("512Mi", "20G", "1.5Gi") as KeyVirt uses them for
// sizes: parsed to bytes so that zod checks the same bounds the API server checks
// with CEL's quantity() library.

/** The Kubernetes quantity grammar (apimachinery resource.Quantity). */
export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/** A byte size: a non-negative quantity with an optional binary or decimal suffix. */
export const BYTE_SIZE_PATTERN = '^([0-9]+(\\.[0-9]+)?|\\.[0-9]+)(([KMGTPE]i)|[kMGTPE])?$';

const SUFFIX_FACTORS: Readonly<Record<string, number>> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

const QUANTITY_PARTS = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)))?$/;

/** The value of a quantity as a number (bytes for sizes), or undefined when malformed. */
export function parseQuantity(text: string): number | undefined {
  const parts = QUANTITY_PARTS.exec(text);
  if (parts === null) return undefined;
  const [, mantissa = '0', suffix, exponent] = parts;
  const base = Number(mantissa);
  if (exponent !== undefined) return base * 10 ** Number(exponent);
  return base * (SUFFIX_FACTORS[suffix ?? ''] ?? 1);
}

/** True when `text` is a well-formed quantity at least as large as `bound`. */
export function quantityAtLeast(text: string, bound: string): boolean {
  const value = parseQuantity(text);
  const limit = parseQuantity(bound);
  return value === undefined || limit === undefined || value >= limit;
}

/** True when `text` is a well-formed quantity no larger than `bound`. */
export function quantityAtMost(text: string, bound: string): boolean {
  const value = parseQuantity(text);
  const limit = parseQuantity(bound);
  return value === undefined || limit === undefined || value <= limit;
}

// Kubernetes resource quantities ("500m", "2", "1.5Gi", "128974848", "1e3") as numbers.
// CPU is counted in millicores, everything else (memory, devices, storage) in units.

const SUFFIX_FACTORS: ReadonlyMap<string, number> = new Map([
  ['', 1],
  ['n', 1e-9],
  ['u', 1e-6],
  ['m', 1e-3],
  ['k', 1e3],
  ['M', 1e6],
  ['G', 1e9],
  ['T', 1e12],
  ['P', 1e15],
  ['E', 1e18],
  ['Ki', 2 ** 10],
  ['Mi', 2 ** 20],
  ['Gi', 2 ** 30],
  ['Ti', 2 ** 40],
  ['Pi', 2 ** 50],
  ['Ei', 2 ** 60],
]);

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;

export class InvalidQuantityError extends Error {
  override readonly name = 'InvalidQuantityError';
  readonly quantity: string;
  constructor(quantity: string) {
    super(`"${quantity}" is not a Kubernetes quantity`);
    this.quantity = quantity;
  }
}

/** The value of a quantity in its base unit (bytes, cores, devices). */
export function parseQuantity(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const match = QUANTITY.exec(quantity.trim());
  if (!match) throw new InvalidQuantityError(quantity);
  const [, digits, exponent, suffix] = match;
  const base = Number(digits);
  if (exponent !== undefined) return base * 10 ** Number(exponent);
  const factor = SUFFIX_FACTORS.get(suffix ?? '');
  if (factor === undefined) throw new InvalidQuantityError(quantity);
  return base * factor;
}

/** A CPU quantity in millicores, rounded up as the kube-scheduler does. */
export function parseCpuMillis(quantity: string | number): number {
  return Math.ceil(Math.round(parseQuantity(quantity) * 1e6) / 1e3);
}

/** A byte count as a person reads it: "1.5 GiB", "512 MiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const rounded = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${rounded} ${units[unit] ?? 'B'}`;
}

/** Millicores as a person reads them: "2", "1.5", "250m". */
export function formatCpuMillis(millis: number): string {
  if (millis % 1000 === 0) return String(millis / 1000);
  if (millis > 1000) return (millis / 1000).toFixed(2).replace(/0+$/, '');
  return `${millis}m`;
}

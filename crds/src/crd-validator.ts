// Validates an object against a generated CRD schema the way kube-apiserver does:
// defaults first, then the structural keywords (type, enum, pattern, bounds,
// required, list-map keys), then every x-kubernetes-validations CEL rule, with the
// Kubernetes CEL libraries KeyVirt's rules use (quantity, isSorted). It lets the
// tests show that each rule zod enforces is also enforced by the CRD itself.
import { Environment } from '@marcbachmann/cel-js';
import { parseQuantity } from './quantity.ts';
import type { JsonSchema } from './structural-schema.ts';

export interface SchemaViolation {
  /** The field path, e.g. spec.template.disks[1].name. */
  readonly path: string;
  readonly message: string;
  /** The CEL rule that failed, when the violation comes from one. */
  readonly rule?: string;
}

class Quantity {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

export class CelEvaluationError extends Error {
  override readonly name = 'CelEvaluationError';
}

function toQuantity(text: string): Quantity {
  const value = parseQuantity(text);
  if (value === undefined) throw new CelEvaluationError(`invalid quantity ${text}`);
  return new Quantity(value);
}

function isSorted(list: readonly unknown[]): boolean {
  return list.every((v, i) => i === 0 || (list[i - 1] as number) <= (v as number));
}

const celEnvironment = new Environment({ unlistedVariablesAreDyn: true, homogeneousAggregateLiterals: false })
  .registerType('Quantity', Quantity)
  .registerFunction('isQuantity(string): bool', (s: string) => parseQuantity(s) !== undefined)
  .registerFunction('quantity(string): Quantity', toQuantity)
  .registerFunction('Quantity.compareTo(Quantity): int', (a: Quantity, b: Quantity) => BigInt(Math.sign(a.value - b.value)))
  .registerFunction('Quantity.isInteger(): bool', (q: Quantity) => Number.isInteger(q.value))
  .registerFunction('Quantity.asInteger(): int', (q: Quantity) => {
    if (!Number.isInteger(q.value)) throw new CelEvaluationError('quantity is not an integer');
    return BigInt(q.value);
  })
  .registerFunction('list.isSorted(): bool', isSorted);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

function properties(schema: JsonSchema): Record<string, JsonSchema> {
  return isRecord(schema.properties) ? (schema.properties as Record<string, JsonSchema>) : {};
}

/** A deep copy of `value` with the schema's defaults applied, as the API server does. */
export function applyDefaults(schema: JsonSchema, value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = schema.items;
    return isRecord(items) ? value.map((item) => applyDefaults(items, item)) : (structuredClone(value) as unknown[]);
  }
  if (!isRecord(value)) return value;
  const result: Record<string, unknown> = { ...value };
  for (const [name, child] of Object.entries(properties(schema))) {
    if (result[name] === undefined && child.default !== undefined) result[name] = structuredClone(child.default);
    if (result[name] !== undefined) result[name] = applyDefaults(child, result[name]);
  }
  if (isRecord(schema.additionalProperties)) {
    const additional = schema.additionalProperties;
    for (const [name, child] of Object.entries(result)) result[name] = applyDefaults(additional, child);
  }
  return result;
}

/** The value as CEL sees it: integers as int (bigint). */
function toCel(schema: JsonSchema, value: unknown): unknown {
  if (schema.type === 'integer' && Number.isInteger(value)) return BigInt(value as number);
  if (Array.isArray(value)) return (value as unknown[]).map((v) => (isRecord(schema.items) ? toCel(schema.items, v) : v));
  if (!isRecord(value)) return value;
  const props = properties(schema);
  const additional = isRecord(schema.additionalProperties) ? schema.additionalProperties : undefined;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      const child = props[k] ?? additional;
      return [k, child === undefined ? v : toCel(child, v)];
    }),
  );
}

function typeMatches(type: unknown, value: unknown): boolean {
  switch (type) {
    case 'object':
      return isRecord(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    default:
      return true;
  }
}

function scalarViolations(schema: JsonSchema, value: unknown, path: string): SchemaViolation[] {
  const out: SchemaViolation[] = [];
  const fail = (message: string): void => {
    out.push({ path, message });
  };
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) fail(`Unsupported value: ${JSON.stringify(value)}`);
  if (typeof value === 'string') {
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) fail(`should match '${schema.pattern}'`);
    if (typeof schema.maxLength === 'number' && Array.from(value).length > schema.maxLength) fail(`may not be longer than ${schema.maxLength}`);
    if (typeof schema.minLength === 'number' && Array.from(value).length < schema.minLength) fail(`should be at least ${schema.minLength} chars long`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) fail(`should be greater than or equal to ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) fail(`should be less than or equal to ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) fail(`must have at most ${schema.maxItems} items`);
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) fail(`should have at least ${schema.minItems} items`);
  }
  return out;
}

function listMapViolations(schema: JsonSchema, value: readonly unknown[], path: string): SchemaViolation[] {
  if (schema['x-kubernetes-list-type'] !== 'map' || !Array.isArray(schema['x-kubernetes-list-map-keys'])) return [];
  const keys = schema['x-kubernetes-list-map-keys'] as string[];
  const seen = new Set<string>();
  const out: SchemaViolation[] = [];
  value.forEach((item, index) => {
    const key = JSON.stringify(keys.map((k) => (isRecord(item) ? item[k] : undefined)));
    if (seen.has(key)) out.push({ path: childPath(path, index), message: `Duplicate value: ${key}` });
    seen.add(key);
  });
  return out;
}

interface CelRule {
  readonly rule: string;
  readonly message?: string;
  readonly fieldPath?: string;
}

function celViolations(schema: JsonSchema, value: unknown, path: string): SchemaViolation[] {
  const rules = Array.isArray(schema['x-kubernetes-validations']) ? (schema['x-kubernetes-validations'] as CelRule[]) : [];
  const out: SchemaViolation[] = [];
  for (const rule of rules) {
    if (rule.rule.includes('oldSelf')) continue;
    const at = rule.fieldPath === undefined ? path : `${path}${rule.fieldPath}`.replace(/^\./, '');
    let holds: unknown;
    try {
      holds = celEnvironment.evaluate(rule.rule, { self: toCel(schema, value) });
    } catch (err) {
      out.push({ path: at, message: `rule evaluation error: ${err instanceof Error ? err.message : String(err)}`, rule: rule.rule });
      continue;
    }
    if (holds !== true) out.push({ path: at, message: rule.message ?? `failed rule: ${rule.rule}`, rule: rule.rule });
  }
  return out;
}

const TYPE_ERROR = 'Invalid value: must be of type ';

function walk(schema: JsonSchema, value: unknown, path: string, withCel: boolean): SchemaViolation[] {
  if (!typeMatches(schema.type, value)) return [{ path, message: `${TYPE_ERROR}${String(schema.type)}` }];
  const out = scalarViolations(schema, value, path);
  if (Array.isArray(value)) {
    out.push(...listMapViolations(schema, value, path));
    const items = schema.items;
    if (isRecord(items)) value.forEach((item, index) => out.push(...walk(items, item, childPath(path, index), withCel)));
  } else if (isRecord(value)) {
    const props = properties(schema);
    const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
    for (const name of required) if (value[name] === undefined) out.push({ path: childPath(path, name), message: 'Required value' });
    for (const [name, child] of Object.entries(value)) {
      const childSchema = props[name] ?? (isRecord(schema.additionalProperties) ? schema.additionalProperties : undefined);
      if (childSchema !== undefined) out.push(...walk(childSchema, child, childPath(path, name), withCel));
    }
  }
  if (withCel) out.push(...celViolations(schema, value, path));
  return out;
}

/** Every reason the API server would reject `obj` under the CRD's openAPIV3Schema. */
export function crdViolations(schema: JsonSchema, obj: unknown): SchemaViolation[] {
  const defaulted = applyDefaults(schema, obj);
  const structural = walk(schema, defaulted, '', false);
  // Like kube-apiserver: a type error blocks the CEL rules (they would see wrong types).
  if (structural.some((v) => v.message.startsWith(TYPE_ERROR))) {
    return [...structural, { path: '', message: 'some validation rules were not checked because the object was invalid; correct the existing errors to complete validation' }];
  }
  return [...structural, ...walk(schema, defaulted, '', true).filter((v) => v.rule !== undefined)];
}

// Validation with errors a person understands: every problem as the field path
// (spec.template.disks[1].name) and a message, the same text the API server reports.
import { z } from 'zod';
import { API_VERSION } from './api-group.ts';
import { isKeyVirtKind, KINDS, kindInfo } from './kinds.ts';
import { MigrationPolicy } from './migrationpolicy/v1alpha1.ts';
import { StorageDomain } from './storagedomain/v1alpha1.ts';
import { VirtualMachine } from './virtualmachine/v1alpha1.ts';
import { VirtualMachineMigration } from './virtualmachinemigration/v1alpha1.ts';

export interface ValidationIssue {
  /** The field path, e.g. spec.template.disks[1].name ('' for the object itself). */
  readonly path: string;
  readonly message: string;
}

export type ValidationResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly issues: readonly ValidationIssue[] };

export type KeyVirtObject = VirtualMachine | VirtualMachineMigration | StorageDomain | MigrationPolicy;

/** Formats a zod path as a field path: spec.template.disks[1].name. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((text, key) => {
    if (typeof key === 'number') return `${text}[${key}]`;
    return text === '' ? String(key) : `${text}.${String(key)}`;
  }, '');
}

function fieldName(path: readonly PropertyKey[]): string {
  const last = [...path].reverse().find((k) => typeof k === 'string');
  return last === undefined ? 'value' : last;
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
};

/** Messages for zod's built-in checks that name the field and its bound. */
const readableErrors: z.core.$ZodErrorMap = (issue) => {
  const field = fieldName(issue.path ?? []);
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? `${field} is required` : `${field} must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case 'too_small':
      return issue.origin === 'array' ? `${field} needs at least ${issue.minimum} items` : issue.origin === 'string' ? `${field} must have at least ${issue.minimum} characters` : `${field} must be at least ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'array' ? `${field} may have at most ${issue.maximum} items` : issue.origin === 'string' ? `${field} must be at most ${issue.maximum} characters` : `${field} must be at most ${issue.maximum}`;
    case 'invalid_value':
      return `${field} must be one of: ${issue.values.map(String).join(', ')}`;
    case 'invalid_format':
      return `${field} has an invalid format`;
    default:
      return undefined;
  }
};

function validateWith<S extends z.ZodType>(schema: S, obj: unknown): ValidationResult<z.output<S>> {
  const result = schema.safeParse(obj, { error: readableErrors });
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, issues: result.error.issues.map((issue) => ({ path: formatPath(issue.path), message: issue.message })) };
}

export function validateVirtualMachine(obj: unknown): ValidationResult<VirtualMachine> {
  return validateWith(VirtualMachine, obj);
}

export function validateVirtualMachineMigration(obj: unknown): ValidationResult<VirtualMachineMigration> {
  return validateWith(VirtualMachineMigration, obj);
}

export function validateStorageDomain(obj: unknown): ValidationResult<StorageDomain> {
  return validateWith(StorageDomain, obj);
}

export function validateMigrationPolicy(obj: unknown): ValidationResult<MigrationPolicy> {
  return validateWith(MigrationPolicy, obj);
}

/** Validates any KeyVirt object, chosen by its apiVersion and kind. */
export function validateObject(obj: unknown): ValidationResult<KeyVirtObject> {
  if (typeof obj !== 'object' || obj === null) return { ok: false, issues: [{ path: '', message: 'the object must be a mapping' }] };
  const { apiVersion, kind } = obj as { apiVersion?: unknown; kind?: unknown };
  if (apiVersion !== API_VERSION) return { ok: false, issues: [{ path: 'apiVersion', message: `apiVersion must be ${API_VERSION}` }] };
  if (!isKeyVirtKind(kind)) return { ok: false, issues: [{ path: 'kind', message: `kind must be one of: ${KINDS.join(', ')}` }] };
  return validateWith(kindInfo(kind).schema, obj) as ValidationResult<KeyVirtObject>;
}

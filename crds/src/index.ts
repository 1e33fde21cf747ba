// The KeyVirt API: zod schemas per kind and version, their inferred types, and the
// constants and metadata the operator and launcher share.
export * from './api-group.ts';
export * from './fields.ts';
export { parseQuantity, QUANTITY_PATTERN, BYTE_SIZE_PATTERN } from './quantity.ts';
export * from './virtualmachine/v1alpha1.ts';
export * from './virtualmachinemigration/v1alpha1.ts';
export * from './storagedomain/v1alpha1.ts';
export * from './migrationpolicy/v1alpha1.ts';
export * from './virtualmachineimage/v1alpha1.ts';
export * from './kinds.ts';
export * from './validate.ts';
export type { CelValidation, ValidationRule } from './validation-rule.ts';

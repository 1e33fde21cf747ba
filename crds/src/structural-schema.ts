// Turns zod's OpenAPI 3.0 output into a Kubernetes *structural* schema, and checks
// that a schema is one: every node typed, no $ref, no oneOf/anyOf/allOf/not, only
// the keywords apiextensions.k8s.io/v1 accepts.

export type JsonSchema = { [key: string]: unknown };

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** The keywords apiextensions.k8s.io/v1 JSONSchemaProps supports (and KeyVirt uses). */
const ALLOWED_KEYWORDS = new Set([
  'type',
  'format',
  'description',
  'title',
  'default',
  'enum',
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'required',
  'properties',
  'items',
  'additionalProperties',
  'nullable',
  'example',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
]);

/** The order keys are written in, so that manifests read well and diff stably. */
const KEY_ORDER = [
  'description',
  'type',
  'format',
  'enum',
  'default',
  'pattern',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'nullable',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'required',
  'properties',
  'items',
  'additionalProperties',
  'x-kubernetes-validations',
];

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function orderKeys(node: JsonSchema): JsonSchema {
  const rank = (key: string): number => {
    const index = KEY_ORDER.indexOf(key);
    return index === -1 ? KEY_ORDER.length : index;
  };
  const keys = Object.keys(node).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return Object.fromEntries(keys.map((key) => [key, node[key]]));
}

function mapProperties(properties: unknown): JsonSchema | undefined {
  if (!isSchema(properties)) return undefined;
  return Object.fromEntries(Object.entries(properties).map(([name, child]) => [name, isSchema(child) ? toStructural(child) : child]));
}

/** Converts one zod-emitted JSON schema node (and its children) into structural form. */
export function toStructural(input: JsonSchema): JsonSchema {
  const node: JsonSchema = { ...input };
  delete node.$schema;
  delete node.$id;
  delete node.id;
  if (node.additionalProperties === false) delete node.additionalProperties;
  if (node.maximum === MAX_SAFE) delete node.maximum;
  if (node.minimum === -MAX_SAFE) delete node.minimum;
  // The API server checks date-time by format; zod's long regex adds nothing.
  if (node.format === 'date-time') delete node.pattern;
  const additional = node.additionalProperties;
  if (isSchema(additional) && Object.keys(additional).length === 0) {
    delete node.additionalProperties;
    node['x-kubernetes-preserve-unknown-fields'] = true;
  }
  const properties = mapProperties(node.properties);
  if (properties !== undefined) node.properties = properties;
  if (isSchema(node.items)) node.items = toStructural(node.items);
  if (isSchema(node.additionalProperties)) node.additionalProperties = toStructural(node.additionalProperties);
  if (Array.isArray(node.required) && node.required.length === 0) delete node.required;
  return orderKeys(node);
}

function childNodes(node: JsonSchema, path: string): [string, JsonSchema][] {
  const children: [string, JsonSchema][] = [];
  if (isSchema(node.properties)) {
    for (const [name, child] of Object.entries(node.properties)) if (isSchema(child)) children.push([`${path}.${name}`, child]);
  }
  if (isSchema(node.items)) children.push([`${path}[*]`, node.items]);
  if (isSchema(node.additionalProperties)) children.push([`${path}{*}`, node.additionalProperties]);
  return children;
}

function nodeProblems(node: JsonSchema, path: string, requireDescriptions: boolean): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(node)) if (!ALLOWED_KEYWORDS.has(key)) problems.push(`${path}: unsupported keyword ${key}`);
  const typed = typeof node.type === 'string' || node['x-kubernetes-int-or-string'] === true || node['x-kubernetes-preserve-unknown-fields'] === true;
  if (!typed) problems.push(`${path}: no type`);
  if (node.properties !== undefined && node.additionalProperties !== undefined) problems.push(`${path}: both properties and additionalProperties`);
  if (node.type === 'array' && !isSchema(node.items)) problems.push(`${path}: array without items`);
  if (requireDescriptions && typeof node.description !== 'string') problems.push(`${path}: no description`);
  return problems;
}

/**
 * Lists why a schema is not structural (empty when it is). With `requireDescriptions`,
 * every object property must carry a description, so that `kubectl explain` helps.
 */
export function structuralProblems(schema: JsonSchema, path = '', requireDescriptions = false): string[] {
  const problems = nodeProblems(schema, path === '' ? '<root>' : path, requireDescriptions && path !== '' && !path.startsWith('.metadata') && !path.endsWith('[*]') && !path.endsWith('{*}'));
  for (const [childPath, child] of childNodes(schema, path)) problems.push(...structuralProblems(child, childPath, requireDescriptions));
  return problems;
}

// Where a kind lives in the API: group, version, plural, and whether it is namespaced.

export interface ResourceType {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

export function apiVersionOf(type: ResourceType): string {
  return type.group === '' ? type.version : `${type.group}/${type.version}`;
}

function prefix(type: ResourceType): string {
  return type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
}

/** The collection path: all namespaces when `namespace` is undefined for a namespaced kind. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  if (type.namespaced && namespace !== undefined) {
    return `${prefix(type)}/namespaces/${encodeURIComponent(namespace)}/${type.plural}`;
  }
  return `${prefix(type)}/${type.plural}`;
}

/** The path of one object, optionally of its subresource (`status`). */
export function objectPath(type: ResourceType, ref: ObjectRef, subresource?: string): string {
  const base = `${collectionPath(type, type.namespaced ? (ref.namespace ?? 'default') : undefined)}/${encodeURIComponent(ref.name)}`;
  return subresource === undefined ? base : `${base}/${subresource}`;
}

export interface ObjectRef {
  readonly namespace?: string | undefined;
  readonly name: string;
}

/** The work-queue key of an object: `namespace/name`, or `name` for cluster-scoped kinds. */
export function keyOf(ref: ObjectRef): string {
  return ref.namespace !== undefined && ref.namespace !== '' ? `${ref.namespace}/${ref.name}` : ref.name;
}

export function refOfKey(key: string): ObjectRef {
  const slash = key.indexOf('/');
  if (slash < 0) return { name: key };
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export const coreTypes = {
  pod: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  secret: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  node: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  namespace: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  event: { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  lease: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  persistentVolumeClaim: {
    group: '',
    version: 'v1',
    plural: 'persistentvolumeclaims',
    kind: 'PersistentVolumeClaim',
    namespaced: true,
  },
} as const satisfies Record<string, ResourceType>;

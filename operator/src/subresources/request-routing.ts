// Which answer a request gets, decided from its method, path and whether it asks for a
// websocket upgrade — pure, table-tested. The paths are the contract of ADR 0066:
// discovery at /apis, /apis/<group>, /apis/<group>/<version>; subresources at
// /apis/<group>/<version>/namespaces/<ns>/virtualmachines/<name>/<subresource>.
import { splitRequestPath } from '@keyvirt/launcher/api';
import { badRequest, notFound, SubresourceError } from './errors.ts';

export const SUBRESOURCE_GROUP = 'subresources.keyvirt.io';
export const SUBRESOURCE_VERSION = 'v1alpha1';

/** Every subresource, with the HTTP method it answers and the RBAC verb it needs. */
export const SUBRESOURCES = {
  console: { method: 'GET', verb: 'get', stream: true },
  vnc: { method: 'GET', verb: 'get', stream: true },
  guestinfo: { method: 'GET', verb: 'get', stream: false },
  pause: { method: 'PUT', verb: 'update', stream: false },
  unpause: { method: 'PUT', verb: 'update', stream: false },
  'soft-reboot': { method: 'PUT', verb: 'update', stream: false },
  migrate: { method: 'PUT', verb: 'update', stream: false },
  'migrate-cancel': { method: 'PUT', verb: 'update', stream: false },
} as const satisfies Record<string, { method: 'GET' | 'PUT'; verb: 'get' | 'update'; stream: boolean }>;

export type SubresourceName = keyof typeof SUBRESOURCES;

/** The one subresource of virtualmachineimages: the image's bytes as the request body (PUT or POST; RBAC update or create). */
export const IMAGE_UPLOAD = 'upload';

export type RoutedRequest =
  | { kind: 'health' }
  | { kind: 'discovery'; document: 'apis' | 'group' | 'version' }
  | { kind: 'subresource'; namespace: string; name: string; subresource: SubresourceName; verb: 'get' | 'update'; stream: boolean }
  | { kind: 'image-upload'; namespace: string; name: string; resource: 'virtualmachineimages'; subresource: typeof IMAGE_UPLOAD; verb: 'create' | 'update' };

/** DNS-1123 label (namespaces) and subdomain (VM names are labels here, ADR 0105, but any valid name is routed). */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function isSubresource(value: string): value is SubresourceName {
  return Object.hasOwn(SUBRESOURCES, value);
}

function methodNotAllowed(method: string, what: string): SubresourceError {
  return new SubresourceError(405, 'MethodNotAllowed', `${method} is not allowed on ${what}`);
}

function routeDiscovery(method: string, segments: readonly string[]): RoutedRequest {
  const [, group, version] = segments;
  if (segments.length >= 2 && group !== SUBRESOURCE_GROUP) throw notFound(`the API group ${group ?? ''} is not served here`);
  if (segments.length === 3 && version !== SUBRESOURCE_VERSION) throw notFound(`the version ${SUBRESOURCE_GROUP}/${version ?? ''} is not served here`);
  if (method !== 'GET') throw methodNotAllowed(method, `/${segments.join('/')}`);
  return { kind: 'discovery', document: segments.length === 1 ? 'apis' : segments.length === 2 ? 'group' : 'version' };
}

const SUBRESOURCE_PATH = `/apis/${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}/namespaces/<namespace>/virtualmachines/<name>/<subresource>`;

function routeImageUpload(method: string, namespace: string, name: string, subresource: string, upgrade: boolean): RoutedRequest {
  if (!NAMESPACE.test(namespace)) throw badRequest(`namespace ${JSON.stringify(namespace.slice(0, 80))} is not a valid namespace name`);
  if (!NAME.test(name)) throw badRequest(`name ${JSON.stringify(name.slice(0, 80))} is not a valid VirtualMachineImage name`);
  if (subresource !== IMAGE_UPLOAD) throw notFound(`virtualmachineimages has no subresource ${JSON.stringify(subresource.slice(0, 80))}; known: ${IMAGE_UPLOAD}`);
  if (method !== 'PUT' && method !== 'POST') throw methodNotAllowed(method, `virtualmachineimages/${IMAGE_UPLOAD} (use PUT or POST)`);
  if (upgrade) throw badRequest(`virtualmachineimages/${IMAGE_UPLOAD} is not a websocket`);
  return { kind: 'image-upload', namespace, name, resource: 'virtualmachineimages', subresource: IMAGE_UPLOAD, verb: method === 'PUT' ? 'update' : 'create' };
}

function routeSubresource(method: string, segments: readonly string[], upgrade: boolean): RoutedRequest {
  const [, group, version, nsWord, namespace = '', plural, name = '', subresource = ''] = segments;
  if (group !== SUBRESOURCE_GROUP || version !== SUBRESOURCE_VERSION) throw notFound(`the API ${group ?? ''}/${version ?? ''} is not served here`);
  if (segments.length !== 8 || nsWord !== 'namespaces' || plural !== 'virtualmachines') {
    throw notFound(`the path /${segments.join('/')} is not served here: expected ${SUBRESOURCE_PATH}`);
  }
  if (!NAMESPACE.test(namespace)) throw badRequest(`namespace ${JSON.stringify(namespace.slice(0, 80))} is not a valid namespace name`);
  if (!NAME.test(name)) throw badRequest(`name ${JSON.stringify(name.slice(0, 80))} is not a valid VirtualMachine name`);
  if (!isSubresource(subresource)) {
    throw notFound(`virtualmachines has no subresource ${JSON.stringify(subresource.slice(0, 80))}; known: ${Object.keys(SUBRESOURCES).join(', ')}`);
  }
  const spec = SUBRESOURCES[subresource];
  if (method !== spec.method) throw methodNotAllowed(method, `virtualmachines/${subresource} (use ${spec.method})`);
  if (spec.stream && !upgrade) throw badRequest(`virtualmachines/${subresource} is a websocket: the request must ask for an upgrade`);
  if (!spec.stream && upgrade) throw badRequest(`virtualmachines/${subresource} is not a websocket`);
  return { kind: 'subresource', namespace, name, subresource, verb: spec.verb, stream: spec.stream };
}

/**
 * The route of a request, or a SubresourceError to answer. `segments` are the decoded
 * path segments (no empty ones); `upgrade` is true for a websocket upgrade request.
 */
export function routeRequest(method: string, segments: readonly string[], upgrade: boolean): RoutedRequest {
  const root = segments[0];
  if (segments.length === 1 && (root === 'healthz' || root === 'readyz' || root === 'livez')) {
    if (method !== 'GET') throw methodNotAllowed(method, `/${root}`);
    return { kind: 'health' };
  }
  if (root !== 'apis') throw notFound(`the path /${segments.join('/')} is not served here`);
  if (segments.length <= 3) return routeDiscovery(method, segments);
  const [, group, version, nsWord, namespace = '', plural, name = '', subresource = ''] = segments;
  if (segments.length === 8 && group === SUBRESOURCE_GROUP && version === SUBRESOURCE_VERSION && nsWord === 'namespaces' && plural === 'virtualmachineimages') {
    return routeImageUpload(method, namespace, name, subresource, upgrade);
  }
  return routeSubresource(method, segments, upgrade);
}

/** The request target split into decoded segments (the launcher's splitter); a 400 for anything but an origin-form path. */
export function pathSegments(target: string | undefined): readonly string[] {
  const split = splitRequestPath(target);
  if (!('problem' in split)) return split.segments;
  throw badRequest(split.problem === 'not-origin-form' ? 'the request target must be an absolute path' : 'the request path has an invalid percent-encoding');
}

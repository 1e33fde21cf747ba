// What a node can hold and what its pods already ask for, computed the way the
// kube-scheduler's NodeResourcesFit plugin does: effective pod requests (init
// containers, sidecars, pod overhead, pod-level resources), pods bound to the node
// plus pods already pinned to it but not yet bound.
import type { ContainerShape, NodeShape, PodShape, RequirementShape } from './kube-shapes.ts';
import { parseCpuMillis, parseQuantity } from './resource-quantity.ts';

/** Resource amounts: `cpu` in millicores, everything else in base units. */
export type ResourceAmounts = Map<string, number>;

export interface NodeUsage {
  readonly allocatable: ResourceAmounts;
  readonly requested: ResourceAmounts;
  readonly podCount: number;
}

function amount(resource: string, quantity: string): number {
  return resource === 'cpu' ? parseCpuMillis(quantity) : parseQuantity(quantity);
}

export function resourceAmounts(list: Readonly<Record<string, string>> | undefined): ResourceAmounts {
  const out: ResourceAmounts = new Map();
  for (const [resource, quantity] of Object.entries(list ?? {})) out.set(resource, amount(resource, quantity));
  return out;
}

function addInto(target: ResourceAmounts, add: ResourceAmounts): void {
  for (const [k, v] of add) target.set(k, (target.get(k) ?? 0) + v);
}

function maxInto(target: ResourceAmounts, other: ResourceAmounts): void {
  for (const [k, v] of other) target.set(k, Math.max(target.get(k) ?? 0, v));
}

function containerRequests(c: ContainerShape): ResourceAmounts {
  // Extended resources may be given only as limits; Kubernetes then defaults the request to the limit.
  const requests = resourceAmounts(c.resources?.requests);
  for (const [k, v] of resourceAmounts(c.resources?.limits)) if (!requests.has(k)) requests.set(k, v);
  return requests;
}

/** The requests a pod holds on its node while it runs. */
export function podRequests(pod: PodShape): ResourceAmounts {
  const spec = pod.spec;
  const total: ResourceAmounts = new Map();
  if (spec === undefined) return total;
  const sidecars: ResourceAmounts = new Map();
  const initPeak: ResourceAmounts = new Map();
  for (const init of spec.initContainers ?? []) {
    const req = containerRequests(init);
    if (init.restartPolicy === 'Always') {
      addInto(sidecars, req);
      continue;
    }
    const withSidecars = new Map(sidecars);
    addInto(withSidecars, req);
    maxInto(initPeak, withSidecars);
  }
  for (const c of spec.containers) addInto(total, containerRequests(c));
  addInto(total, sidecars);
  maxInto(total, initPeak);
  const podLevel = resourceAmounts(spec.resources?.requests);
  for (const [k, v] of podLevel) total.set(k, v);
  addInto(total, resourceAmounts(spec.overhead));
  return total;
}

function isTerminated(pod: PodShape): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

function singleValueIn(req: RequirementShape, key: string): string | undefined {
  return req.key === key && req.operator === 'In' && req.values?.length === 1 ? req.values[0] : undefined;
}

/** Where a not-yet-bound pod is pinned by a single-node required affinity (a place, see podPlace), if anywhere. */
function pinnedPlace(pod: PodShape): string | undefined {
  const terms = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms?.length !== 1) return undefined;
  const term = terms[0];
  for (const req of term?.matchFields ?? []) {
    const name = singleValueIn(req, 'metadata.name');
    if (name !== undefined) return `node:${name}`;
  }
  for (const req of term?.matchExpressions ?? []) {
    const hostname = singleValueIn(req, 'kubernetes.io/hostname');
    if (hostname !== undefined) return `hostname:${hostname}`;
  }
  return undefined;
}

/** The node a not-yet-bound pod is pinned to by a single-node required affinity, if any. */
export function pinnedNode(pod: PodShape, nodeNameByHostname: ReadonlyMap<string, string>): string | undefined {
  const place = pinnedPlace(pod);
  return place === undefined ? undefined : nodeOfPlace(place, nodeNameByHostname);
}

/** The node a pod occupies: its bound node, or the node it is pinned to while pending. */
export function occupiedNode(pod: PodShape, nodeNameByHostname: ReadonlyMap<string, string>): string | undefined {
  const place = podPlace(pod);
  return place === undefined ? undefined : nodeOfPlace(place, nodeNameByHostname);
}

/**
 * Where a pod counts, known from the pod alone: `node:<name>` (bound, or pinned by
 * name) or `hostname:<value>` (pinned by the hostname label, resolved against the nodes
 * when usage is read); undefined for a finished pod or one not tied to a node.
 */
export function podPlace(pod: PodShape): string | undefined {
  if (isTerminated(pod)) return undefined;
  const bound = pod.spec?.nodeName;
  if (bound !== undefined && bound !== '') return `node:${bound}`;
  return pinnedPlace(pod);
}

/** The node name of a place (a hostname no node carries is taken for a node name, as the pinning does). */
export function nodeOfPlace(place: string, nodeNameByHostname: ReadonlyMap<string, string>): string {
  if (place.startsWith('node:')) return place.slice('node:'.length);
  const hostname = place.slice('hostname:'.length);
  return nodeNameByHostname.get(hostname) ?? hostname;
}

export function hostnameIndex(nodes: readonly NodeShape[]): Map<string, string> {
  const index = new Map<string, string>();
  for (const node of nodes) {
    const name = node.metadata?.name;
    const hostname = node.metadata?.labels?.['kubernetes.io/hostname'];
    if (name !== undefined && hostname !== undefined) index.set(hostname, name);
  }
  return index;
}

/** Requests and pod count of the pods at one place (or on one node). */
export interface PlacedRequests {
  readonly amounts: ResourceAmounts;
  readonly count: number;
}

/** Usage per node name, for every node in `nodes`. */
export function usageByNode(nodes: readonly NodeShape[], pods: readonly PodShape[]): Map<string, NodeUsage> {
  const byHostname = hostnameIndex(nodes);
  const requested = new Map<string, { amounts: ResourceAmounts; count: number }>();
  for (const pod of pods) {
    const node = occupiedNode(pod, byHostname);
    if (node === undefined) continue;
    const entry = requested.get(node) ?? { amounts: new Map<string, number>(), count: 0 };
    addInto(entry.amounts, podRequests(pod));
    entry.count += 1;
    requested.set(node, entry);
  }
  return usageOfNodes(nodes, requested);
}

/**
 * Usage per node name from totals per place (`podPlace`): the same answer as
 * usageByNode over the pods the totals were summed from, in O(nodes + places).
 */
export function usageFromPlaces(nodes: readonly NodeShape[], places: ReadonlyMap<string, PlacedRequests>): Map<string, NodeUsage> {
  const byHostname = hostnameIndex(nodes);
  const requested = new Map<string, { amounts: ResourceAmounts; count: number }>();
  for (const [place, totals] of places) {
    const node = nodeOfPlace(place, byHostname);
    const entry = requested.get(node) ?? { amounts: new Map<string, number>(), count: 0 };
    addInto(entry.amounts, totals.amounts);
    entry.count += totals.count;
    requested.set(node, entry);
  }
  return usageOfNodes(nodes, requested);
}

function usageOfNodes(nodes: readonly NodeShape[], requested: ReadonlyMap<string, PlacedRequests>): Map<string, NodeUsage> {
  const usage = new Map<string, NodeUsage>();
  for (const node of nodes) {
    const name = node.metadata?.name ?? '';
    const entry = requested.get(name);
    usage.set(name, {
      allocatable: resourceAmounts(node.status?.allocatable ?? node.status?.capacity),
      requested: entry?.amounts ?? new Map<string, number>(),
      podCount: entry?.count ?? 0,
    });
  }
  return usage;
}

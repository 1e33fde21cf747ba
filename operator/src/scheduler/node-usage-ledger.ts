// What the pods already ask of each node, kept up to date as pods come, change and go,
// so that placing a VM reads a total per node instead of summing every cached pod.
// Summing them at each placement made a burst of N VMs cost O(N²): at 5,000 VMs a fifth
// of the operator's CPU went to parsing the requests of the pods it had created before
// (ADR 0115).
// Totals are kept per place (`podPlace`: a node name, or a hostname that a pin names),
// known from the pod alone; places become node names when usage is read.
import type { NodeShape, PodShape } from './kube-shapes.ts';
import { podPlace, podRequests, usageByNode, usageFromPlaces, type NodeUsage, type ResourceAmounts } from './node-usage.ts';

/** What a placement reads: the usage of each node given. */
export interface NodeUsageSource {
  usageByNode(nodes: readonly NodeShape[]): Map<string, NodeUsage>;
}

/** The usage of a list of pods, summed when asked (tests, and callers that hold such a list). */
export function podListUsage(pods: readonly PodShape[]): NodeUsageSource {
  return { usageByNode: (nodes) => usageByNode(nodes, pods) };
}

interface Counted {
  readonly place: string;
  readonly amounts: ResourceAmounts;
}

interface Totals {
  readonly amounts: Map<string, number>;
  count: number;
}

export class NodeUsageLedger implements NodeUsageSource {
  /** What each counted pod adds, by its cache key. */
  readonly #pods = new Map<string, Counted>();
  readonly #places = new Map<string, Totals>();

  /** Pods counted (finished pods and pods tied to no node are not). */
  get size(): number {
    return this.#pods.size;
  }

  /** Records the pod at `key` as it is now (undefined: it is gone). */
  set(key: string, pod: PodShape | undefined): void {
    const before = this.#pods.get(key);
    const place = pod === undefined ? undefined : podPlace(pod);
    if (before !== undefined) {
      this.#pods.delete(key);
      this.#subtract(before);
    }
    if (pod === undefined || place === undefined) return;
    const counted: Counted = { place, amounts: podRequests(pod) };
    this.#pods.set(key, counted);
    const totals = this.#places.get(place) ?? { amounts: new Map<string, number>(), count: 0 };
    for (const [k, v] of counted.amounts) totals.amounts.set(k, (totals.amounts.get(k) ?? 0) + v);
    totals.count += 1;
    this.#places.set(place, totals);
  }

  usageByNode(nodes: readonly NodeShape[]): Map<string, NodeUsage> {
    return usageFromPlaces(nodes, this.#places);
  }

  #subtract(counted: Counted): void {
    const totals = this.#places.get(counted.place);
    if (totals === undefined) return;
    totals.count -= 1;
    // The last pod of a place takes its totals with it: no rounding left behind by fractional quantities.
    if (totals.count === 0) {
      this.#places.delete(counted.place);
      return;
    }
    for (const [k, v] of counted.amounts) totals.amounts.set(k, (totals.amounts.get(k) ?? 0) - v);
  }
}

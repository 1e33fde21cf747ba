// Whether the operator can trust what it last heard from a VM's launcher (ADR 0064):
// pure, from the launcher pod's Node and the time the launcher's event stream (its
// heartbeats included) has been silent. The answer only ever lowers the VM's status
// to Unknown; the storage lease, never this view, decides whether the VM may run elsewhere.
import type { Node, Pod } from '../runtime/core-schemas.ts';
import { ANNOTATION_NODE_FENCED, TAINT_OUT_OF_SERVICE } from './names.ts';

/** A launcher whose event stream (heartbeats every 500 ms) is silent this long is unreachable. */
export const LAUNCHER_SILENCE_MS = 2000;

export type Reachability =
  | { readonly kind: 'reachable' }
  | {
      readonly kind: 'unreachable';
      readonly reason: 'NodeUnreachable' | 'LauncherUnreachable';
      readonly message: string;
      /** The node is known fenced: out-of-service taint or the keyvirt.io/node-fenced=true annotation. */
      readonly fenced: boolean;
    };

/** The node is known not to run anything any more (an administrator or a remediation said so). */
export function nodeFenced(node: Node): boolean {
  return node.metadata.annotations?.[ANNOTATION_NODE_FENCED] === 'true' || (node.spec?.taints ?? []).some((t) => t.key === TAINT_OUT_OF_SERVICE);
}

export function nodeReady(node: Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

export interface ReachabilityInput {
  readonly pod: Pod | undefined;
  /** The Node the pod is bound to, as the cache has it (undefined when it is not in the cache). */
  readonly node: Node | undefined;
  /** How long the launcher has been silent; undefined when it was never heard from. */
  readonly silentMs: number | undefined;
  readonly silenceThresholdMs?: number;
}

export function reachability(input: ReachabilityInput): Reachability {
  const nodeName = input.pod?.spec.nodeName;
  if (input.pod === undefined || nodeName === undefined) return { kind: 'reachable' };
  const node = input.node;
  if (node === undefined) return { kind: 'unreachable', reason: 'NodeUnreachable', message: `node ${nodeName} no longer exists`, fenced: false };
  if (nodeFenced(node)) {
    const how = node.metadata.annotations?.[ANNOTATION_NODE_FENCED] === 'true' ? `${ANNOTATION_NODE_FENCED}=true` : `the ${TAINT_OUT_OF_SERVICE} taint`;
    return { kind: 'unreachable', reason: 'NodeUnreachable', message: `node ${nodeName} is fenced (${how})`, fenced: true };
  }
  if (!nodeReady(node)) {
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    return { kind: 'unreachable', reason: 'NodeUnreachable', message: `node ${nodeName} is not Ready (${ready?.status ?? 'no Ready condition'}${ready?.reason === undefined ? '' : `: ${ready.reason}`})`, fenced: false };
  }
  const threshold = input.silenceThresholdMs ?? LAUNCHER_SILENCE_MS;
  if (input.silentMs !== undefined && input.silentMs >= threshold) {
    return { kind: 'unreachable', reason: 'LauncherUnreachable', message: `the launcher has not been heard from for ${(input.silentMs / 1000).toFixed(1)} s`, fenced: false };
  }
  return { kind: 'reachable' };
}

/**
 * Remembers each node's readiness and fencing: `changed` is true when a node event
 * changes either (or the node is new), so that a node's routine status updates do not
 * reconcile every VM it runs.
 */
export class NodeHealthChanges {
  readonly #seen = new Map<string, string>();

  changed(node: Node): boolean {
    const signature = `${String(nodeReady(node))}/${String(nodeFenced(node))}`;
    const before = this.#seen.get(node.metadata.name);
    this.#seen.set(node.metadata.name, signature);
    return before !== signature;
  }
}

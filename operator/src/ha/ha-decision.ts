// What the HA controller does next for one VM (ADR 0064), as a pure function of what it
// observed: the VM's launcher pod and whether it can be heard, its Node, the replacement
// pod (if any) and what that replacement's launcher reports about the storage lease.
// The lease is the arbiter: a replacement is only promoted once its own launcher reports
// that it holds the lease and runs the guest; the operator's view of a node never is.
import type { VirtualMachine } from '@keyvirt/crds';
import type { Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import type { Reachability } from '../vm/launcher-reachability.ts';
import type { LauncherPodState } from '../vm/run-strategy.ts';
import { ANNOTATION_STORAGE_LEASE, LABEL_HA_REPLACEMENT } from '../vm/names.ts';
import type { BudgetState } from './restart-budget.ts';

export interface HaObservation {
  readonly vm: VirtualMachine;
  /** The VM should run (not deleting; runStrategy Always, or RerunOnFailure). */
  readonly wantsRunning: boolean;
  /** The VM's launcher pod (not a candidate) and its state. */
  readonly current: Pod | undefined;
  readonly currentState: LauncherPodState;
  /** Whether the current launcher can be heard, and why not. */
  readonly reach: Reachability;
  /** The current launcher was heard within the silence threshold (heartbeats included). */
  readonly currentHeard: boolean;
  /** The VM's HA replacement pods not finished, terminating ones included (any order). */
  readonly replacements: readonly Pod[];
  /** UIDs of replacement pods whose deletion this process issued (the cache may not show it yet). */
  readonly deleteIssued: ReadonlySet<string>;
  /** What the live replacement's launcher (liveReplacement) reports, once heard. */
  readonly replacementStatus: LauncherStatus | undefined;
  /** Nodes that exist, are Ready and not fenced: a replacement elsewhere is bound to a bad node. */
  readonly healthyNodes: ReadonlySet<string>;
  /** Wall-clock time of the observation (ms), against the pods' creation times. */
  readonly now: number;
  /** A migration target of the VM is active: a migration owns the VM's pods. */
  readonly migrating: boolean;
  /** Why the VM cannot be restarted by HA (no shared posix domain), if it cannot. */
  readonly noSharedStorage: string | undefined;
  readonly budget: BudgetState;
}

/** The launcher pod was started with a storage lease (ANNOTATION_STORAGE_LEASE): its QEMU dies when the lease is lost. */
export function podKeepsLease(pod: Pod | undefined): boolean {
  return (pod?.metadata.annotations?.[ANNOTATION_STORAGE_LEASE] ?? '') !== '';
}

export type HaAction =
  | { readonly kind: 'none' }
  /** Wait for the replacement's launcher (lease acquisition, boot); poll again. */
  | { readonly kind: 'wait' }
  /** The launcher is lost: start a replacement on another node (after the budget and priority checks). */
  | ReplaceAction
  | { readonly kind: 'refuse'; readonly reason: 'NoSharedStorage' | 'RestartBudgetExhausted' | 'LauncherWithoutLease'; readonly message: string }
  /** The replacement holds the lease and runs: make it the VM's launcher and remove the old pod. */
  | { readonly kind: 'promote'; readonly oldUid: string | undefined; readonly takeover: boolean }
  /** The replacement is not needed (or not any more): delete it. */
  | { readonly kind: 'deleteReplacement'; readonly reason: 'LauncherHeardAgain' | 'VMNotRunning' | 'Superseded'; readonly message: string }
  /** A VM that is not HA, on a fenced node: remove its pod at once so that its run strategy starts it elsewhere. */
  | { readonly kind: 'fenceRestart'; readonly uid: string; readonly node: string };

export interface ReplaceAction {
  readonly kind: 'replace';
  readonly failedNode: string;
  readonly nodeFenced: boolean;
  readonly reason: string;
  readonly message: string;
  /** Nodes the replacement must not be placed on: the failed node, and those of stuck replacements. */
  readonly exclude: readonly string[];
  /**
   * The pod UID the replacement's name derives from (haReplacementPodName): the old pod's,
   * or that of the newest replacement being given up, whose name may still be taken.
   */
  readonly nameSeed: string;
  /** A live replacement that is stuck: deleted once the new one has a node. */
  readonly supersedes: Pod | undefined;
}

/** A replacement not running past this age, its launcher never reporting the lease held, is replaced elsewhere. */
export const REPLACEMENT_STUCK_MS = 60_000;

/** A deletion of the pod was issued: it is terminating, or this process deleted it and the cache does not show it yet. */
export function retiring(pod: Pod, deleteIssued: ReadonlySet<string>): boolean {
  return pod.metadata.deletionTimestamp !== undefined || deleteIssued.has(pod.metadata.uid ?? '');
}

/** Newest first: creation time, then name (creation times have a one-second resolution). */
function newestFirst(a: Pod, b: Pod): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? 1 : -1;
  return a.metadata.name < b.metadata.name ? 1 : a.metadata.name > b.metadata.name ? -1 : 0;
}

/** The replacement that counts: the newest one no deletion was issued for. A terminating pod is never promoted. */
export function liveReplacement(replacements: readonly Pod[], deleteIssued: ReadonlySet<string>): Pod | undefined {
  return replacements.filter((p) => !retiring(p, deleteIssued)).sort(newestFirst)[0];
}

/**
 * A replacement that will not run where it is: bound to a node that is gone, not Ready or
 * fenced, or not running REPLACEMENT_STUCK_MS after its creation (Pending, ContainerCreating
 * on a node whose storage is broken). One whose launcher holds the lease is never stuck.
 */
export function replacementStuck(pod: Pod, status: LauncherStatus | undefined, o: Pick<HaObservation, 'healthyNodes' | 'now'>): boolean {
  if (status?.lease?.state === 'Held') return false;
  const node = pod.spec.nodeName;
  if (node !== undefined && !o.healthyNodes.has(node)) return true;
  const created = Date.parse(pod.metadata.creationTimestamp ?? '');
  return pod.status?.phase !== 'Running' && Number.isFinite(created) && o.now - created > REPLACEMENT_STUCK_MS;
}

/** The replacement's launcher reports the lease held and the guest running. */
export function replacementHoldsLease(status: LauncherStatus | undefined): boolean {
  return status?.lease?.state === 'Held' && (status.phase === 'Running' || status.phase === 'Paused');
}

/** The current launcher counts as lost: its node is fenced, or it has been silent past the threshold (or never heard and its node is not Ready). */
export function launcherLost(o: Pick<HaObservation, 'reach' | 'currentHeard'>): boolean {
  if (o.reach.kind !== 'unreachable') return false;
  if (o.reach.fenced) return true;
  return !o.currentHeard;
}

function haEnabled(vm: VirtualMachine): boolean {
  return vm.spec.highAvailability.enabled;
}

export function decideHa(o: HaObservation): HaAction {
  const live = liveReplacement(o.replacements, o.deleteIssued);
  if (live !== undefined) {
    const action = decideWithReplacement(o, live);
    return action.kind === 'wait' && replacementStuck(live, o.replacementStatus, o) ? replaceStuck(o, live) : action;
  }
  const action = decideWithoutReplacement(o);
  if (action.kind !== 'replace') return action;
  // Replacements given up on (deleted, terminating) may still hold the name derived from the old pod.
  const given = o.replacements.filter((p) => retiring(p, o.deleteIssued)).sort(newestFirst)[0];
  return { ...action, exclude: exclusions(o, action.failedNode, undefined), nameSeed: given?.metadata.uid ?? action.nameSeed };
}

/** The failed node, and the nodes of every replacement of the VM that is stuck (`also` included). */
function exclusions(o: HaObservation, failedNode: string, also: Pod | undefined): string[] {
  const stuck = o.replacements.filter((p) => p === also || replacementStuck(p, undefined, o));
  const nodes = [failedNode, ...stuck.map((p) => p.spec.nodeName ?? '')].filter((n) => n !== '');
  return [...new Set(nodes)];
}

/** A stuck replacement is replaced elsewhere (counted as the same restart); it is deleted once the new one has a node. */
function replaceStuck(o: HaObservation, stuck: Pod): HaAction {
  const oldPod = o.current !== undefined && o.current.metadata.uid === stuck.metadata.labels?.[LABEL_HA_REPLACEMENT] ? o.current : undefined;
  const failedNode = oldPod?.spec.nodeName ?? '';
  const where = stuck.spec.nodeName ?? '(no node)';
  return restartOrRefuse(o, {
    kind: 'replace',
    failedNode,
    nodeFenced: o.reach.kind === 'unreachable' && o.reach.fenced,
    reason: 'ReplacementStuck',
    message: `replacement pod ${stuck.metadata.name} on ${where} does not run`,
    exclude: exclusions(o, failedNode, stuck),
    nameSeed: stuck.metadata.uid ?? '',
    supersedes: stuck,
  });
}

function decideWithoutReplacement(o: HaObservation): HaAction {
  if (!o.wantsRunning || o.migrating) return { kind: 'none' };
  const failed = launcherFailed(o);
  if (failed !== undefined) return restartOrRefuse(o, failed);
  // A terminating pod counts too: on a dead node its deletion (an eviction by the unreachable taint) never completes.
  if (o.currentState.kind !== 'active') return { kind: 'none' };
  const node = o.current?.spec.nodeName;
  if (node === undefined || !launcherLost(o) || o.reach.kind !== 'unreachable') return { kind: 'none' };
  if (!haEnabled(o.vm)) {
    // Without a lease nothing but fencing proves the old QEMU stopped (ADR 0064): a dead node's VM waits, Unknown.
    return o.reach.fenced && o.vm.spec.runStrategy === 'Always' ? { kind: 'fenceRestart', uid: o.currentState.uid, node } : { kind: 'none' };
  }
  if (o.noSharedStorage === undefined && !o.reach.fenced && !podKeepsLease(o.current)) {
    // Its launcher holds no lease (HA was enabled while it ran): only fencing proves its QEMU gone.
    return { kind: 'refuse', reason: 'LauncherWithoutLease', message: `launcher pod ${o.current?.metadata.name ?? ''} was started without a storage lease; restart the VM to protect it, or fence node ${node}` };
  }
  return restartOrRefuse(o, replaceOf(o, { failedNode: node, nodeFenced: o.reach.fenced, reason: o.reach.reason, message: o.reach.message }));
}

function replaceOf(o: HaObservation, what: Pick<ReplaceAction, 'failedNode' | 'nodeFenced' | 'reason' | 'message'>): ReplaceAction {
  return { kind: 'replace', ...what, exclude: [what.failedNode], nameSeed: o.currentState.kind === 'none' ? '' : o.currentState.uid, supersedes: undefined };
}

/**
 * An HA VM's launcher pod that failed (e.g. it self-fenced when its storage hung) is
 * replaced on another node at once, rather than restarted by the run strategy after its
 * crash-loop delay, possibly on the node that lost its storage.
 */
function launcherFailed(o: HaObservation): ReplaceAction | undefined {
  const s = o.currentState;
  const node = o.current?.spec.nodeName;
  if (!haEnabled(o.vm) || s.kind !== 'finished' || s.succeeded || s.terminating || node === undefined) return undefined;
  return replaceOf(o, { failedNode: node, nodeFenced: false, reason: 'LauncherFailed', message: `launcher pod ${o.current?.metadata.name ?? ''} on node ${node} failed` });
}

function restartOrRefuse(o: HaObservation, replace: ReplaceAction): HaAction {
  if (o.noSharedStorage !== undefined) return { kind: 'refuse', reason: 'NoSharedStorage', message: o.noSharedStorage };
  if (o.budget.exhausted) {
    return {
      kind: 'refuse',
      reason: 'RestartBudgetExhausted',
      message: `${o.budget.recent.length} HA restarts within the window; next one allowed after ${new Date(o.budget.retryAt ?? 0).toISOString()}`,
    };
  }
  return replace;
}

function decideWithReplacement(o: HaObservation, replacement: Pod): HaAction {
  const replaces = replacement.metadata.labels?.[LABEL_HA_REPLACEMENT];
  if (!o.wantsRunning && !replacementHoldsLease(o.replacementStatus)) {
    return { kind: 'deleteReplacement', reason: 'VMNotRunning', message: 'the VM should not run' };
  }
  if (replacementHoldsLease(o.replacementStatus)) {
    return { kind: 'promote', oldUid: replaces, takeover: o.replacementStatus?.lease?.takeover === true };
  }
  if (o.currentState.kind !== 'none' && o.currentState.uid !== replaces) {
    return { kind: 'deleteReplacement', reason: 'Superseded', message: `the VM's launcher is now pod ${o.current?.metadata.name ?? ''}, not the one replaced` };
  }
  const heldElsewhere = o.replacementStatus?.lease?.state === 'Held';
  if (o.currentState.kind === 'active' && o.currentHeard && !(o.reach.kind === 'unreachable' && o.reach.fenced) && !heldElsewhere) {
    return { kind: 'deleteReplacement', reason: 'LauncherHeardAgain', message: 'the old launcher was heard from again before the replacement held the lease' };
  }
  return { kind: 'wait' };
}

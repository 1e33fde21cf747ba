// Which of a VM's pods is its launcher. The launcher pod no longer has a fixed name: a
// live migration hands the VM to a target pod of its own name (ADR 0081). Pure: the
// answer depends only on the pods the cache holds, and every stale view of them leads
// to waiting, never to a second launcher or a restart of a VM that migrated away.
import type { VirtualMachine } from '@keyvirt/crds';
import type { Pod } from '../runtime/core-schemas.ts';
import { LABEL_HA_REPLACEMENT, LABEL_MIGRATION_TARGET, LABEL_VM, launcherPodName } from './names.ts';
import type { LauncherPodState } from './run-strategy.ts';

export interface LauncherSelection {
  /** The VM's launcher pod: the newest active non-target pod, else the newest finished one. */
  readonly pod: Pod | undefined;
  readonly state: LauncherPodState;
  /** A pod of an earlier VM of the same name still holds the launcher pod's name. */
  readonly foreign: boolean;
  /**
   * A migration is handing the VM over: a target pod that has not been promoted is
   * active, or another launcher pod besides the current one is. The VM controller then
   * starts, stops and deletes nothing.
   */
  readonly handOver: boolean;
  /** Finished launcher pods other than the current one (what a migration left behind). */
  readonly leftovers: readonly Pod[];
  /**
   * Active target pods no migration claims: their VirtualMachineMigration is not in the
   * cache although the pod is older than ORPHAN_TARGET_AGE_MS (the object was removed
   * without the operator, e.g. its finalizer cleared by hand).
   */
  readonly orphanTargets: readonly Pod[];
  /** The newest active HA replacement pod not promoted yet (ADR 0064); part of the hand-over. */
  readonly haReplacement: Pod | undefined;
}

/** Longer than any lag between the pod and the migration informers. */
export const ORPHAN_TARGET_AGE_MS = 60_000;

export function isFinished(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

export function isMigrationTarget(pod: Pod): boolean {
  return pod.metadata.labels?.[LABEL_MIGRATION_TARGET] !== undefined;
}

/** An HA replacement launcher not promoted yet: like a migration target, not the VM's launcher. */
export function isHaReplacement(pod: Pod): boolean {
  return pod.metadata.labels?.[LABEL_HA_REPLACEMENT] !== undefined;
}

/** A pod waiting to take the VM over: a migration target or an HA replacement. */
function isCandidate(pod: Pod): boolean {
  return isMigrationTarget(pod) || isHaReplacement(pod);
}

function ownedBy(pod: Pod, vm: VirtualMachine): boolean {
  return pod.metadata.ownerReferences?.some((r) => r.controller === true && r.uid === vm.metadata.uid) === true;
}

/** Newest first: creation time, then name (creation times have a one-second resolution). */
function newestFirst(a: Pod, b: Pod): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? 1 : -1;
  return a.metadata.name < b.metadata.name ? 1 : a.metadata.name > b.metadata.name ? -1 : 0;
}

export function podState(pod: Pod | undefined): LauncherPodState {
  if (pod === undefined) return { kind: 'none' };
  const uid = pod.metadata.uid ?? '';
  const terminating = pod.metadata.deletionTimestamp !== undefined;
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') {
    const finishedAt = pod.status?.containerStatuses?.[0]?.state?.terminated?.finishedAt;
    return { kind: 'finished', uid, succeeded: phase === 'Succeeded', terminating, finishedAt };
  }
  return { kind: 'active', uid, terminating };
}

/**
 * The launcher of `vm` among `pods` (any pods; those of other VMs are ignored).
 * `migrationUids` are the VM's VirtualMachineMigrations in the cache (any phase).
 */
export function selectLauncher(vm: VirtualMachine, pods: readonly Pod[], migrationUids?: ReadonlySet<string>, now = 0): LauncherSelection {
  const named = pods.filter((p) => p.metadata.namespace === vm.metadata.namespace && p.metadata.labels?.[LABEL_VM] === vm.metadata.name);
  const own = named.filter((p) => ownedBy(p, vm));
  const launchers = own.filter((p) => !isCandidate(p)).sort(newestFirst);
  const active = launchers.filter((p) => !isFinished(p));
  const pod = active[0] ?? launchers[0];
  const activeCandidates = own.filter((p) => isCandidate(p) && !isFinished(p));
  const activeTargets = activeCandidates.filter(isMigrationTarget);
  const foreign = own.length === 0 && named.some((p) => p.metadata.name === launcherPodName(vm.metadata.name));
  return {
    pod,
    state: podState(pod),
    foreign,
    handOver: activeCandidates.length > 0 || active.length > 1,
    leftovers: launchers.filter((p) => p !== pod && isFinished(p)),
    orphanTargets:
      migrationUids === undefined
        ? []
        : activeTargets.filter(
            (p) =>
              !migrationUids.has(p.metadata.labels?.[LABEL_MIGRATION_TARGET] ?? '') &&
              now - Date.parse(p.metadata.creationTimestamp ?? '') > ORPHAN_TARGET_AGE_MS,
          ),
    haReplacement: activeCandidates.filter(isHaReplacement).sort(newestFirst)[0],
  };
}

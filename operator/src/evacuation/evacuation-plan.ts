// What evacuating one node takes, as pure functions of the node, the VMs that run on it
// and the migrations that exist: oVirt's host maintenance (PreparingForMaintenance →
// every VM migrated away → Maintenance) on a cordoned or `keyvirt.io/drain`-tainted
// node. Each LiveMigrate VM gets a VirtualMachineMigration (the migration controller
// enforces the parallel limits; extra ones wait in Pending); a failed attempt is
// followed by a new one after a backoff; Shutdown VMs are left to the eviction.
import { MIGRATION_FINAL_PHASES, type VirtualMachine, type VirtualMachineMigration } from '@keyvirt/crds';
import type { Node } from '../runtime/core-schemas.ts';
import { ANNOTATION_EVACUATION_ATTEMPT, ANNOTATION_EVACUATION_NODE, DRAIN_TAINT, evacuationMigrationName } from './names.ts';

export type DrainReason = 'cordoned' | 'drain-taint';

/** Why the node is being drained, or undefined when it is not. */
export function drainReason(node: Node | undefined): DrainReason | undefined {
  if (node === undefined || node.metadata.deletionTimestamp !== undefined) return undefined;
  if (node.spec?.unschedulable === true) return 'cordoned';
  if ((node.spec?.taints ?? []).some((t) => t.key === DRAIN_TAINT)) return 'drain-taint';
  return undefined;
}

/** Delay before the next attempt after `failures` failed ones in a row: 10 s doubling to 5 min. */
export function retryDelayMs(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(10_000 * 2 ** Math.min(failures - 1, 10), 300_000);
}

/** Finished evacuation attempts kept per VM and node (older ones are deleted). */
export const KEPT_ATTEMPTS = 3;
/** How long a Succeeded evacuation may stay unreflected in the VM status before a new attempt. */
export const SETTLE_MS = 30_000;
const SETTLE_POLL_MS = 2_000;

export type VmVerdict =
  | { kind: 'migrate'; name: string; attempt: number; previousFailure: string | undefined }
  | { kind: 'migrating'; migration: string }
  | { kind: 'backoff'; failures: number; retryAt: number; lastFailure: string | undefined }
  | { kind: 'blocked'; reason: string }
  | { kind: 'waiting'; phase: string }
  /** The last evacuation succeeded and the VM status does not show it yet. */
  | { kind: 'settling'; migration: string }
  /** evictionStrategy Shutdown: the eviction stops it and the VM controller starts it elsewhere. */
  | { kind: 'shutdown' };

export interface VmEvacuation {
  vm: VirtualMachine;
  verdict: VmVerdict;
}

export type MaintenancePhase = 'None' | 'PreparingForMaintenance' | 'Maintenance';

export interface EvacuationPlan {
  phase: MaintenancePhase;
  reason: DrainReason | undefined;
  vms: VmEvacuation[];
  /** Evacuation migrations still Pending on a node that is no longer drained. */
  cancel: VirtualMachineMigration[];
  /** Finished attempts beyond KEPT_ATTEMPTS. */
  prune: VirtualMachineMigration[];
  requeueAfterMs: number | undefined;
}

export interface EvacuationInput {
  nodeName: string;
  node: Node | undefined;
  /** The managed VMs (any node; filtered here by status.nodeName). */
  vms: readonly VirtualMachine[];
  /** Every VirtualMachineMigration the operator sees. */
  migrations: readonly VirtualMachineMigration[];
  now: number;
}

const GUEST_RUNS: readonly string[] = ['Running', 'Paused', 'Migrating'];

function final(m: VirtualMachineMigration): boolean {
  return m.status?.phase !== undefined && MIGRATION_FINAL_PHASES.includes(m.status.phase);
}

export function attemptOf(m: VirtualMachineMigration): number {
  const n = Number(m.metadata.annotations?.[ANNOTATION_EVACUATION_ATTEMPT]);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

function evacuationsOf(migrations: readonly VirtualMachineMigration[], nodeName: string): VirtualMachineMigration[] {
  return migrations.filter((m) => m.metadata.annotations?.[ANNOTATION_EVACUATION_NODE] === nodeName);
}

function sameVm(m: VirtualMachineMigration, vm: VirtualMachine): boolean {
  return m.metadata.namespace === vm.metadata.namespace && m.spec.vmName === vm.metadata.name;
}

function endedAt(m: VirtualMachineMigration): number {
  const t = Date.parse(m.status?.endTime ?? m.metadata.creationTimestamp ?? '');
  return Number.isNaN(t) ? 0 : t;
}

function liveMigratableBlocker(vm: VirtualMachine): string | undefined {
  const c = vm.status?.conditions?.find((x) => x.type === 'LiveMigratable');
  return c?.status === 'False' ? `the VM cannot be live-migrated: ${c.message !== '' ? c.message : c.reason}` : undefined;
}

/** The latest attempt succeeded but the VM status still names the pod it moved away from. */
function stillSettling(latest: VirtualMachineMigration | undefined, vm: VirtualMachine, now: number): boolean {
  if (latest?.status?.phase !== 'Succeeded') return false;
  const source = latest.status.sourcePod;
  return source !== undefined ? source === vm.status?.launcherPod : now - endedAt(latest) < SETTLE_MS;
}

/** Failed (or cancelled) attempts in a row, newest first. */
function trailingFailures(attempts: readonly VirtualMachineMigration[]): number {
  let failures = 0;
  for (const m of attempts) {
    if (m.status?.phase !== 'Failed' && m.status?.phase !== 'Cancelled') break;
    failures += 1;
  }
  return failures;
}

/** The decision for one VM that runs on the drained node. */
export function vmVerdict(vm: VirtualMachine, nodeName: string, migrations: readonly VirtualMachineMigration[], now: number): VmVerdict {
  if (vm.spec.evictionStrategy !== 'LiveMigrate') return { kind: 'shutdown' };
  const active = migrations.find((m) => sameVm(m, vm) && !final(m));
  if (active !== undefined) return { kind: 'migrating', migration: active.metadata.name };
  const phase = vm.status?.phase ?? 'Unknown';
  if (phase === 'Migrating' || !GUEST_RUNS.includes(phase)) return { kind: 'waiting', phase };
  const blocker = liveMigratableBlocker(vm);
  if (blocker !== undefined) return { kind: 'blocked', reason: blocker };
  const attempts = evacuationsOf(migrations, nodeName)
    .filter((m) => sameVm(m, vm))
    .sort((a, b) => attemptOf(b) - attemptOf(a));
  const latest = attempts[0];
  if (latest !== undefined && stillSettling(latest, vm, now)) return { kind: 'settling', migration: latest.metadata.name };
  const failures = trailingFailures(attempts);
  const lastFailure = failures > 0 ? (latest?.status?.failureReason ?? latest?.status?.phase) : undefined;
  if (latest !== undefined && failures > 0) {
    const retryAt = endedAt(latest) + retryDelayMs(failures);
    if (retryAt > now) return { kind: 'backoff', failures, retryAt, lastFailure };
  }
  const attempt = (latest === undefined ? 0 : attemptOf(latest)) + 1;
  return { kind: 'migrate', name: evacuationMigrationName(vm.metadata.name, nodeName, attempt), attempt, previousFailure: lastFailure };
}

/** The whole evacuation step for one node. */
export function planEvacuation(input: EvacuationInput): EvacuationPlan {
  const { nodeName, now } = input;
  const reason = drainReason(input.node);
  // Only migrations of managed VMs: operators sharing a cluster by --vm-selector leave each other's alone.
  const managed = new Set(input.vms.map((vm) => `${vm.metadata.namespace ?? ''}/${vm.metadata.name}`));
  const evacuations = evacuationsOf(input.migrations, nodeName).filter((m) => managed.has(`${m.metadata.namespace ?? ''}/${m.spec.vmName}`));
  const prune = pruneOld(evacuations);
  if (reason === undefined) {
    // Uncordoned: nothing comes back, and what has not started yet is called off.
    const cancel = evacuations.filter((m) => (m.status?.phase ?? 'Pending') === 'Pending' && m.metadata.deletionTimestamp === undefined);
    return { phase: 'None', reason, vms: [], cancel, prune, requeueAfterMs: undefined };
  }
  const onNode = input.vms.filter((vm) => vm.status?.nodeName === nodeName && vm.metadata.deletionTimestamp === undefined);
  const vms = onNode.map((vm) => ({ vm, verdict: vmVerdict(vm, nodeName, input.migrations, now) }));
  let requeueAfterMs: number | undefined;
  for (const { verdict } of vms) {
    const wait = verdict.kind === 'backoff' ? Math.max(verdict.retryAt - now, 0) + 100 : verdict.kind === 'settling' ? SETTLE_POLL_MS : undefined;
    if (wait !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? wait, wait);
  }
  const remaining = vms.filter((v) => v.verdict.kind !== 'shutdown').length;
  return { phase: remaining > 0 ? 'PreparingForMaintenance' : 'Maintenance', reason, vms, cancel: [], prune, requeueAfterMs };
}

function pruneOld(evacuations: readonly VirtualMachineMigration[]): VirtualMachineMigration[] {
  const byVm = new Map<string, VirtualMachineMigration[]>();
  for (const m of evacuations) {
    if (!final(m) || m.metadata.deletionTimestamp !== undefined) continue;
    const key = `${m.metadata.namespace ?? ''}/${m.spec.vmName}`;
    byVm.set(key, [...(byVm.get(key) ?? []), m]);
  }
  return [...byVm.values()].flatMap((ms) => ms.sort((a, b) => attemptOf(b) - attemptOf(a)).slice(KEPT_ATTEMPTS));
}

// Where a migration's target launcher runs, and what its pod needs: the VM scheduler
// (through the same PlacementDecider as a start, so CPU-model compatibility, the VM's
// own placement rules and fit including the launcher overhead all apply) over every
// node but the source, with the migration's targetNodeSelector added to the VM's.
import type { VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import type { Node } from '../runtime/core-schemas.ts';
import type { NodeUsageSource } from '../scheduler/node-usage-ledger.ts';
import { leaseDomainOf, resolveDisks, type DiskLookup } from '../vm/disk-volumes.ts';
import { mayEmulate, type LauncherPodInput, type LauncherSettings } from '../vm/launcher-pod.ts';
import { launcherResources } from '../vm/launcher-resources.ts';
import type { PlacementDecider } from '../vm/placement.ts';

export interface TargetPlacementInput {
  vm: VirtualMachine;
  migration: VirtualMachineMigration;
  sourceNode: string;
  settings: LauncherSettings;
  disks: DiskLookup;
  placement: PlacementDecider;
  nodes: readonly Node[];
  usage: NodeUsageSource;
}

export type TargetPlacement =
  | { readonly kind: 'placed'; readonly node: string; readonly input: Omit<LauncherPodInput, 'migrationTarget'> }
  | { readonly kind: 'problem'; readonly reason: string; readonly message: string; readonly transient: boolean };

/** The VM as the scheduler sees it for the target: its node selector plus the migration's. */
export function vmForTarget(vm: VirtualMachine, migration: VirtualMachineMigration): VirtualMachine {
  const selector = migration.spec.targetNodeSelector;
  if (selector === undefined) return vm;
  return { ...vm, spec: { ...vm.spec, nodeSelector: { ...(vm.spec.nodeSelector ?? {}), ...selector } } };
}

export async function placeTarget(t: TargetPlacementInput): Promise<TargetPlacement> {
  // An HA VM's target mounts its lease and image directory as its launcher does (ADR 0064): the source hands the lease over.
  const lease = t.vm.spec.highAvailability.enabled ? leaseDomainOf(t.vm, t.disks) : undefined;
  const leaseDomain = lease === undefined || 'problem' in lease ? undefined : lease;
  const resolution = await resolveDisks(t.vm, t.disks, { leaseDomain: leaseDomain?.domain });
  if (!resolution.ok) {
    return {
      kind: 'problem',
      reason: resolution.problems[0]?.reason ?? 'DiskNotReady',
      message: resolution.problems.map((p) => p.message).join('; '),
      transient: resolution.problems.every((p) => p.transient),
    };
  }
  const emulate = mayEmulate(t.vm, t.settings);
  const resources = launcherResources(t.vm.spec.template, emulate);
  const vm = vmForTarget(t.vm, t.migration);
  const candidates = t.nodes.filter((n) => n.metadata.name !== t.sourceNode);
  const placement = t.placement.place({ vm, requests: resources.requests, allowEmulation: emulate }, candidates, t.usage);
  if (placement.kind === 'Unschedulable') {
    return { kind: 'problem', reason: 'Unschedulable', message: `no target node besides the source ${t.sourceNode}: ${placement.message}`, transient: true };
  }
  return {
    kind: 'placed',
    node: placement.node,
    input: {
      vm,
      settings: t.settings,
      affinity: placement.affinity,
      devices: placement.devices,
      disks: resolution.disks,
      lease: leaseDomain === undefined ? undefined : { domain: leaseDomain, nodeFenced: false },
    },
  };
}

// Builds the VirtualMachine controller on a manager: its informers, the key mapping from
// pods, nodes and storage domains to VMs, the launcher followers, and the metrics.
import { StorageDomain, VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import type { OperatorMetrics } from '../metrics.ts';
import { sleepOn } from '../runtime/clock.ts';
import { Controller } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { nodeSchema, persistentVolumeClaimSchema } from '../runtime/core-schemas.ts';
import { type KubeClient, isNotFound } from '../runtime/kube-client.ts';
import { mapToOwner } from '../runtime/owner-mapping.ts';
import { coreTypes, keyOf, objectPath } from '../runtime/resource.ts';
import { claimHolder } from './claim-sharing.ts';
import type { DiskLookup } from './disk-volumes.ts';
import { LauncherFollowers } from './launcher-followers.ts';
import { NodeHealthChanges } from './launcher-reachability.ts';
import { LauncherObjects } from './launcher-objects.ts';
import { nodeUsageOf } from './launcher-pod-views.ts';
import { launcherPodInformer } from './launcher-pod-cache.ts';
import type { LauncherSettings } from './launcher-pod.ts';
import { LABEL_VM, storageDomainType, virtualMachineMigrationType, virtualMachineType } from './names.ts';
import type { PlacementDecider } from './placement.ts';
import type { RestartBudget } from '../ha/restart-budget.ts';
import { VmStatusWriter } from './status-writer.ts';
import { VmMetricsTally } from './vm-metrics-tally.ts';
import { vmsConcernedByDomainUpdate } from './domain-changes.ts';
import { migrationsOfVm } from '../migration/migrations-of-vm.ts';
import { VmController } from './vm-controller.ts';
import { vmPatcher } from './vm-patcher.ts';

export interface VmControllerWiring extends ControllerWiringBase {
  metrics: OperatorMetrics;
  settings: LauncherSettings;
  placement: PlacementDecider;
  workers: number;
  /** Only VMs matching this label selector are managed (several operators can then share a cluster). */
  vmSelector?: string | undefined;
  /** The HA restart budget, shown in the HighAvailability condition. */
  haBudget?: RestartBudget | undefined;
}

/** What other controllers may use of the VM controller: its queue and its launcher followers (read them, never drive them). */
export interface VmControllerHandle {
  readonly controller: Controller;
  readonly followers: LauncherFollowers;
}

/** Disks of a VM: StorageDomains from the cache, claims read from the API server. */
export function diskLookup(client: KubeClient, storageDomain: DiskLookup['storageDomain']): DiskLookup {
  return {
    storageDomain,
    claim: async (namespace, name) => {
      try {
        const pvc = persistentVolumeClaimSchema.parse(await client.get(objectPath(coreTypes.persistentVolumeClaim, { namespace, name })));
        return { accessModes: pvc.status?.accessModes ?? pvc.spec?.accessModes ?? [], bound: pvc.status?.phase === 'Bound' };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
  };
}

/** The VM cache's index: the StorageDomains a VM has disks on. */
const BY_STORAGE_DOMAIN = 'vm-storage-domains';

export function addVmController(w: VmControllerWiring): VmControllerHandle {
  const { manager, client } = w;
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.vmSelector));
  // The pod cache holds launcher pods only (every controller's pod informer shares it), indexed by VM.
  const pods = launcherPodInformer(manager);
  if (!pods.hasIndex(LABEL_VM)) pods.addIndex(LABEL_VM, (p) => (p.metadata.labels?.[LABEL_VM] === undefined ? [] : [keyOf({ namespace: p.metadata.namespace, name: p.metadata.labels[LABEL_VM] })]));
  const nodes = manager.informer(coreTypes.node, nodeSchema);
  const domains = manager.informer(storageDomainType, StorageDomain);
  // Migrations carry the labels of the VMs they move: operators sharing a cluster by --vm-selector see only theirs.
  const migrations = manager.informer(virtualMachineMigrationType, VirtualMachineMigration, selectorOption(w.vmSelector));
  const migrationsOf = migrationsOfVm(migrations);
  const log = w.log.child({ controller: 'virtualmachine' });

  const ref: { controller?: Controller } = {};
  const enqueue = (key: string): void => ref.controller?.enqueue(key);
  const followers = new LauncherFollowers({ log: log.child({ component: 'launcher-followers' }), sleep: sleepOn(w.clock), onChange: enqueue, observer: w.metrics });
  const nodeUsage = nodeUsageOf(pods);
  const disks: DiskLookup = { ...diskLookup(client, (name) => domains.get(name)), claimHolder: (vm, claim) => claimHolder(vm, claim, vms.list()) };
  const reconciler = new VmController({
    caches: {
      vm: (k) => vms.get(k),
      nodes: () => nodes.list(),
      nodeUsage: () => nodeUsage,
      podsOfVm: (vm) => pods.byIndex(LABEL_VM, keyOf(vm.metadata)),
      latestMigration: (vm) =>
        [...migrationsOf(vm.metadata)]
          .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name))
          .at(-1),
      migrationUids: (vm) => new Set(migrationsOf(vm.metadata).map((m) => m.metadata.uid ?? '')),
    },
    disks,
    placement: w.placement,
    launchers: new LauncherObjects(client),
    followers,
    statusWriter: new VmStatusWriter(client, w.events),
    vmWriter: vmPatcher(client),
    events: w.events,
    settings: w.settings,
    clock: w.clock,
    onTokenMissing: (key) => ref.controller?.enqueueAfter(key, 2000),
    haBudget: w.haBudget,
  });
  const c = new Controller({ name: 'virtualmachine', reconciler, log: w.log, clock: w.clock, workers: w.workers, observer: w.metrics });
  ref.controller = c;
  c.watch(vms);
  c.watch(pods, mapToOwner(virtualMachineType));
  c.watch(migrations, (m) => [keyOf({ namespace: m.metadata.namespace, name: m.spec.vmName })]);
  const waiting = (): string[] =>
    vms
      .list()
      .filter((vm) => vm.status?.phase === 'Unschedulable' || vm.status?.phase === 'Scheduling')
      .map((vm) => keyOf(vm.metadata));
  // A node's readiness and fencing show in the status of the VMs it runs (ADR 0064).
  const onNode = (node: string): string[] =>
    pods
      .list()
      .filter((p) => p.spec.nodeName === node && p.metadata.labels?.[LABEL_VM] !== undefined)
      .map((p) => keyOf({ namespace: p.metadata.namespace, name: p.metadata.labels?.[LABEL_VM] ?? '' }));
  const health = new NodeHealthChanges();
  c.watch(nodes, (node) => [...new Set([...waiting(), ...(health.changed(node) ? onNode(node.metadata.name) : [])])]);
  // A domain's VMs come from an index, and a domain's update wakes only the VMs it concerns.
  if (!vms.hasIndex(BY_STORAGE_DOMAIN)) vms.addIndex(BY_STORAGE_DOMAIN, (vm) => [...new Set(vm.spec.template.disks.flatMap((d) => (d.storageDomain === undefined ? [] : [d.storageDomain.name])))]);
  const onDomain = (sd: StorageDomain): string[] => vms.byIndex(BY_STORAGE_DOMAIN, sd.metadata.name).map((vm) => keyOf(vm.metadata));
  c.watch(domains, onDomain, { updateKeys: (old, sd) => vmsConcernedByDomainUpdate(old, sd, onDomain) });
  manager.addController(c);
  manager.addLeaderRunnable({
    name: 'launcher-followers',
    run: async (signal) => {
      const stopped = new Promise<void>((resolve) => {
        signal.addEventListener(
          'abort',
          () => {
            followers.stopAll();
            resolve();
          },
          { once: true },
        );
      });
      // A launcher gone silent is reported within the silence threshold (ADR 0064).
      await Promise.all([stopped, followers.watchSilence(signal)]);
    },
  });
  const tally = new VmMetricsTally();
  manager.addHandlers(vms, tally.vmHandlers);
  manager.addHandlers(pods, tally.podHandlers);
  w.metrics.addVmSource(tally);
  return { controller: c, followers };
}

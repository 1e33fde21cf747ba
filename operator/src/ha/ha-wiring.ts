// Builds the HA controller on a manager: the informers it shares with the VM controller,
// the key mapping from pods and nodes to VMs, its own followers of replacement launchers,
// and its restarts counted in keyvirt_ha_restarts_total (one of the operator's metrics).
import { StorageDomain, VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import type { OperatorMetrics } from '../metrics.ts';
import { sleepOn } from '../runtime/clock.ts';
import { Controller } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { nodeSchema, podSchema, type Pod } from '../runtime/core-schemas.ts';
import type { KubeClient } from '../runtime/kube-client.ts';
import { mapToOwner } from '../runtime/owner-mapping.ts';
import { coreTypes, keyOf, objectPath } from '../runtime/resource.ts';
import { LauncherFollowers } from '../vm/launcher-followers.ts';
import { LauncherObjects } from '../vm/launcher-objects.ts';
import { launcherPodsOfVm, nodeUsageOf } from '../vm/launcher-pod-views.ts';
import { NodeHealthChanges } from '../vm/launcher-reachability.ts';
import type { LauncherSettings } from '../vm/launcher-pod.ts';
import { LABEL_HA_REPLACEMENT, LABEL_VM, storageDomainType, virtualMachineMigrationType, virtualMachineType } from '../vm/names.ts';
import type { PlacementDecider } from '../vm/placement.ts';
import { vmPatcher } from '../vm/vm-patcher.ts';
import { diskLookup, type VmControllerHandle } from '../vm/vm-wiring.ts';
import { migrationsOfVm } from '../migration/migrations-of-vm.ts';
import { HaController, type ReplacementWriter } from './ha-controller.ts';
import type { RestartBudget } from './restart-budget.ts';

export interface HaControllerWiring extends ControllerWiringBase {
  metrics: OperatorMetrics;
  settings: LauncherSettings;
  placement: PlacementDecider;
  budget: RestartBudget;
  /** The VM controller: its followers tell how long each current launcher has been silent. */
  vmController: VmControllerHandle;
  workers: number;
  vmSelector?: string | undefined;
}

function replacementWriter(client: KubeClient): ReplacementWriter {
  return {
    promote: async (pod: Pod) => {
      await client.patch(
        objectPath(coreTypes.pod, { namespace: pod.metadata.namespace, name: pod.metadata.name }),
        { metadata: { uid: pod.metadata.uid, labels: { [LABEL_HA_REPLACEMENT]: null } } },
        'merge',
      );
    },
  };
}

export function addHaController(w: HaControllerWiring): Controller {
  const { manager, client } = w;
  const selector = selectorOption(w.vmSelector);
  const vms = manager.informer(virtualMachineType, VirtualMachine, selector);
  const pods = manager.informer(coreTypes.pod, podSchema);
  const nodes = manager.informer(coreTypes.node, nodeSchema);
  const domains = manager.informer(storageDomainType, StorageDomain);
  const migrations = manager.informer(virtualMachineMigrationType, VirtualMachineMigration, selector);
  const log = w.log.child({ controller: 'high-availability' });

  const ref: { controller?: Controller } = {};
  const enqueue = (key: string): void => ref.controller?.enqueue(key);
  const replacements = new LauncherFollowers({ log: log.child({ component: 'replacement-followers' }), sleep: sleepOn(w.clock), onChange: enqueue });
  w.vmController.followers.addListener(enqueue);
  const podsOfVm = launcherPodsOfVm(pods);
  const migrationsOf = migrationsOfVm(migrations);
  const nodeUsage = nodeUsageOf(pods);
  const reconciler = new HaController({
    caches: {
      vm: (k) => vms.get(k),
      nodes: () => nodes.list(),
      nodeUsage: () => nodeUsage,
      podsOfVm,
      migrationUids: (vm) => new Set(migrationsOf(vm.metadata).map((m) => m.metadata.uid ?? '')),
    },
    disks: diskLookup(client, (name) => domains.get(name)),
    placement: w.placement,
    launchers: new LauncherObjects(client),
    current: w.vmController.followers,
    replacements,
    writer: replacementWriter(client),
    vmWriter: vmPatcher(client),
    events: w.events,
    settings: w.settings,
    budget: w.budget,
    clock: w.clock,
    observer: w.metrics,
    onTokenMissing: (key) => ref.controller?.enqueueAfter(key, 2000),
  });
  const c = new Controller({ name: 'high-availability', reconciler, log: w.log, clock: w.clock, workers: w.workers, observer: w.metrics });
  ref.controller = c;
  c.watch(vms);
  c.watch(pods, mapToOwner(virtualMachineType));
  // A node's readiness or fencing concerns the VMs whose launchers it runs.
  const health = new NodeHealthChanges();
  const vmsOnNode = (node: string): string[] =>
    pods
      .list()
      .filter((p) => p.spec.nodeName === node && p.metadata.labels?.[LABEL_VM] !== undefined)
      .map((p) => keyOf({ namespace: p.metadata.namespace, name: p.metadata.labels?.[LABEL_VM] ?? '' }));
  c.watch(nodes, (node) => (health.changed(node) ? vmsOnNode(node.metadata.name) : []));
  manager.addController(c);
  manager.addLeaderRunnable({
    name: 'replacement-followers',
    run: async (signal) => {
      const stopped = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      await Promise.all([stopped, replacements.watchSilence(signal)]);
      replacements.stopAll();
    },
  });
  return c;
}

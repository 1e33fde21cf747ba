// Builds the VirtualMachineMigration controller on a manager: its informers (shared
// with the VM controller where they are the same), the key mapping from pods and VMs
// to migrations, the source-stream followers.
import { MigrationPolicy, StorageDomain, VirtualMachine, VirtualMachineMigration } from '@keyvirt/crds';
import type { OperatorMetrics } from '../metrics.ts';
import { sleepOn } from '../runtime/clock.ts';
import { Controller } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { namespaceSchema, nodeSchema, podSchema, type Pod } from '../runtime/core-schemas.ts';
import { type KubeClient, isNotFound } from '../runtime/kube-client.ts';
import { coreTypes, keyOf, objectPath } from '../runtime/resource.ts';
import { migrationPolicyType } from '../migration-policy/names.ts';
import { LauncherObjects } from '../vm/launcher-objects.ts';
import { launcherPodsOfVm, nodeUsageOf } from '../vm/launcher-pod-views.ts';
import type { LauncherSettings } from '../vm/launcher-pod.ts';
import { LABEL_MIGRATION_TARGET, LABEL_VM, storageDomainType, virtualMachineMigrationType, virtualMachineType } from '../vm/names.ts';
import type { PlacementDecider } from '../vm/placement.ts';
import { diskLookup } from '../vm/vm-wiring.ts';
import { MigrationController, type MigrationObjectWriter } from './migration-controller.ts';
import { MigrationLaunchers } from './migration-launchers.ts';
import { MigrationStatusWriter } from './migration-status.ts';
import { migrationsOfVm } from './migrations-of-vm.ts';
import { isFinal } from './phases.ts';
import { clusterPolicySource, type MigrationPolicySource } from './policy-source.ts';


export interface MigrationControllerWiring extends ControllerWiringBase {
  metrics: OperatorMetrics;
  settings: LauncherSettings;
  placement: PlacementDecider;
  workers: number;
  vmSelector?: string | undefined;
  policies?: MigrationPolicySource;
}

function objectWriter(client: KubeClient): MigrationObjectWriter {
  return {
    patchMigration: async (m, body) => {
      try {
        await client.patch(objectPath(virtualMachineMigrationType, { namespace: m.metadata.namespace, name: m.metadata.name }), body, 'merge');
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    },
    promote: async (pod: Pod) => {
      await client.patch(
        objectPath(coreTypes.pod, { namespace: pod.metadata.namespace, name: pod.metadata.name }),
        { metadata: { uid: pod.metadata.uid, labels: { [LABEL_MIGRATION_TARGET]: null } } },
        'merge',
      );
    },
  };
}

export function addMigrationController(w: MigrationControllerWiring): Controller {
  const { manager, client } = w;
  const selector = selectorOption(w.vmSelector);
  const vms = manager.informer(virtualMachineType, VirtualMachine, selector);
  // Migrations carry the labels of the VMs they move: operators sharing a cluster by --vm-selector see only theirs.
  const migrations = manager.informer(virtualMachineMigrationType, VirtualMachineMigration, selector);
  const pods = manager.informer(coreTypes.pod, podSchema);
  const nodeUsage = nodeUsageOf(pods);
  const nodes = manager.informer(coreTypes.node, nodeSchema);
  const domains = manager.informer(storageDomainType, StorageDomain);
  const policies = manager.informer(migrationPolicyType, MigrationPolicy);
  const namespaces = manager.informer(coreTypes.namespace, namespaceSchema);
  const log = w.log.child({ controller: 'virtualmachinemigration' });
  const ref: { controller?: Controller } = {};
  const objects = new LauncherObjects(client);
  const launchers = new MigrationLaunchers({
    tokens: objects,
    log: log.child({ component: 'migration-streams' }),
    sleep: sleepOn(w.clock),
    now: () => w.clock.now(),
    onChange: (key) => ref.controller?.enqueue(key),
  });
  const reconciler = new MigrationController({
    caches: {
      migration: (k) => migrations.get(k),
      migrations: () => migrations.list(),
      vm: (k) => vms.get(k),
      pod: (k) => pods.get(k),
      podsOfVm: launcherPodsOfVm(pods),
      nodes: () => nodes.list(),
      nodeUsage: () => nodeUsage,
      policies: () => policies.list(),
      namespaceLabels: (ns) => namespaces.get(ns)?.metadata.labels ?? {},
    },
    launchers,
    objects,
    writer: objectWriter(client),
    statusWriter: new MigrationStatusWriter(client, w.events),
    placement: w.placement,
    disks: diskLookup(client, (name) => domains.get(name)),
    settings: w.settings,
    policies: w.policies ?? clusterPolicySource,
    clock: w.clock,
  });
  const c = new Controller({ name: 'virtualmachinemigration', reconciler, log: w.log, clock: w.clock, workers: w.workers, observer: w.metrics });
  ref.controller = c;
  const migrationsOf = migrationsOfVm(migrations);
  const unfinishedOf = (namespace: string | undefined, vmName: string | undefined): string[] =>
    vmName === undefined
      ? []
      : migrationsOf({ namespace, name: vmName })
          .filter((m) => !isFinal(m.status?.phase))
          .map((m) => keyOf(m.metadata));
  const pending = (): string[] => migrations.list().filter((m) => (m.status?.phase ?? 'Pending') === 'Pending').map((m) => keyOf(m.metadata));
  c.watch(migrations, (m) => [keyOf(m.metadata), ...(isFinal(m.status?.phase) ? pending() : [])]);
  c.watch(pods, (p) => unfinishedOf(p.metadata.namespace, p.metadata.labels?.[LABEL_VM]));
  c.watch(vms, (vm) => unfinishedOf(vm.metadata.namespace, vm.metadata.name));
  manager.addController(c);
  manager.addLeaderRunnable({
    name: 'migration-streams',
    run: (signal) =>
      new Promise<void>((resolve) => {
        signal.addEventListener(
          'abort',
          () => {
            launchers.stopAll();
            resolve();
          },
          { once: true },
        );
      }),
  });
  return c;
}

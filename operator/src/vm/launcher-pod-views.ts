// Views of the shared launcher pod cache (launcher-pod-cache.ts) that several controllers
// read once per reconcile, each answered without walking the whole cache: the pods of
// one VM (an index by VM), and what the pods ask of each node (a ledger kept from the
// cache's events). A reconcile that listed every pod grew with the number of VMs, and a
// burst of N VMs with N².
import type { Pod } from '../runtime/core-schemas.ts';
import type { Informer } from '../runtime/informer.ts';
import { keyOf } from '../runtime/resource.ts';
import { NodeUsageLedger, type NodeUsageSource } from '../scheduler/node-usage-ledger.ts';
import { LABEL_VM } from './names.ts';

/** The index of launcher pods by `namespace/vm-name` (the VM's cache key). */
const BY_VM = LABEL_VM;

/** The launcher pods of a VM (its own, migration targets, HA replacements), from the index by VM (added once, shared). */
export function launcherPodsOfVm(pods: Informer<Pod>): (vm: { metadata: { name: string; namespace?: string | undefined } }) => Pod[] {
  if (!pods.hasIndex(BY_VM)) {
    pods.addIndex(BY_VM, (p) => {
      const vm = p.metadata.labels?.[LABEL_VM];
      return vm === undefined ? [] : [keyOf({ namespace: p.metadata.namespace, name: vm })];
    });
  }
  return (vm) => pods.byIndex(BY_VM, keyOf(vm.metadata));
}

const ledgers = new WeakMap<Informer<Pod>, NodeUsageLedger>();

/**
 * The requests of the cached pods per node, kept from the informer's events (one ledger
 * per informer, shared by every controller that places a launcher pod).
 */
export function nodeUsageOf(pods: Informer<Pod>): NodeUsageSource {
  const known = ledgers.get(pods);
  if (known !== undefined) return known;
  const ledger = new NodeUsageLedger();
  for (const pod of pods.list()) ledger.set(keyOf(pod.metadata), pod);
  pods.addHandlers({
    onAdd: (pod) => ledger.set(keyOf(pod.metadata), pod),
    onUpdate: (_old, pod) => ledger.set(keyOf(pod.metadata), pod),
    onDelete: (pod) => ledger.set(keyOf(pod.metadata), undefined),
  });
  ledgers.set(pods, ledger);
  return ledger;
}

// The operator's pod cache: launcher pods only (every pod labelled with a VM name), not
// every pod of the cluster. Every controller's pod informer without a selector of its
// own shares it; the labels it selects on are reserved to the operator by admission
// (ADR 0114), so a pod in it is one the operator made.
import type { Informer } from '../runtime/informer.ts';
import type { Manager } from '../runtime/manager.ts';
import { podSchema, type Pod } from '../runtime/core-schemas.ts';
import { coreTypes } from '../runtime/resource.ts';
import { LABEL_VM } from './names.ts';

/** What the shared pod cache holds. */
export const LAUNCHER_POD_CACHE_SELECTOR = LABEL_VM;

/** The shared launcher pod informer, the pod cache restricted to launcher pods first (idempotent). */
export function launcherPodInformer(manager: Pick<Manager, 'restrictCache' | 'informer'>): Informer<Pod> {
  manager.restrictCache(coreTypes.pod, { labelSelector: LAUNCHER_POD_CACHE_SELECTOR });
  return manager.informer(coreTypes.pod, podSchema);
}

// Builds the VirtualMachineImage controller on a manager: informers for images, the
// domains they go onto, the storage job pods and the VMs whose disks use images, and
// the key mapping from each to images.
import { StorageDomain, VirtualMachine, VirtualMachineImage } from '@keyvirt/crds';
import { Controller, type ControllerObserver } from '../runtime/controller.ts';
import { selectorOption, type ControllerWiringBase } from '../runtime/controller-wiring.ts';
import { podSchema } from '../runtime/core-schemas.ts';
import { coreTypes, keyOf } from '../runtime/resource.ts';
import { STORAGE_JOB_SELECTOR } from '../storage/names.ts';
import { storageDomainType, virtualMachineType } from '../vm/names.ts';
import { ImageController, type ImageSettings } from './image-controller.ts';
import { ANNOTATION_IMAGE } from './import-job.ts';
import { readImportProgress } from './import-progress.ts';
import { virtualMachineImageType } from './names.ts';

export interface ImageControllerWiring extends ControllerWiringBase {
  observer?: ControllerObserver;
  settings: ImageSettings;
  /** Manage only the images whose labels match (a label selector). */
  imageSelector?: string | undefined;
  /** The domains this operator manages (the StorageDomain controller's selector). */
  domainSelector?: string | undefined;
}

export const DEFAULT_IMAGE_RETRY_MS = 30_000;
export const DEFAULT_IMAGE_PROGRESS_INTERVAL_MS = 2_000;

export function addImageController(w: ImageControllerWiring): Controller {
  const { manager } = w;
  const images = manager.informer(virtualMachineImageType, VirtualMachineImage, selectorOption(w.imageSelector));
  const domains = manager.informer(storageDomainType, StorageDomain, selectorOption(w.domainSelector));
  const jobPods = manager.informer(coreTypes.pod, podSchema, { labelSelector: STORAGE_JOB_SELECTOR });
  const vms = manager.informer(virtualMachineType, VirtualMachine, selectorOption(w.imageSelector));
  const imagesOf = (vm: VirtualMachine): { name: string; domain: string }[] =>
    vm.spec.template.disks.flatMap((d) => (d.storageDomain?.image === undefined ? [] : [{ name: d.storageDomain.image, domain: d.storageDomain.name }]));
  const reconciler = new ImageController({
    caches: {
      image: (key) => images.get(key),
      domain: (name) => domains.get(name),
      jobPods: () => jobPods.list(),
      vmsUsing: (namespace, name, domain) =>
        vms
          .list()
          .filter((vm) => (vm.metadata.namespace ?? 'default') === namespace && imagesOf(vm).some((i) => i.name === name && i.domain === domain))
          .map((vm) => vm.metadata.name),
    },
    client: w.client,
    events: w.events,
    clock: w.clock,
    settings: w.settings,
    progress: readImportProgress,
  });
  const controller = new Controller({ name: 'virtualmachineimage', reconciler, log: w.log, clock: w.clock, workers: 2, observer: w.observer });
  controller.watch(images);
  // Job pods name their image in an annotation (their controller is the domain); only the
  // controller's own checks (namespace, name, owner UID) decide whether a pod counts.
  controller.watch(jobPods, (pod) => {
    const key = pod.metadata.annotations?.[ANNOTATION_IMAGE];
    return key === undefined || !key.includes('/') ? [] : [key];
  });
  controller.watch(vms, (vm) => imagesOf(vm).map((i) => keyOf({ namespace: vm.metadata.namespace, name: i.name })));
  controller.watch(domains, (sd) => images.list().filter((i) => i.spec.storageDomain === sd.metadata.name).map((i) => keyOf({ namespace: i.metadata.namespace, name: i.metadata.name })));
  manager.addController(controller);
  return controller;
}

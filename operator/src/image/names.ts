// The VirtualMachineImage resource and the finalizer its controller holds while the
// image's file may be on a domain.
import { GROUP, PLURALS, VERSION } from '@keyvirt/crds';
import type { ResourceType } from '../runtime/resource.ts';

export const virtualMachineImageType: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: PLURALS.VirtualMachineImage,
  kind: 'VirtualMachineImage',
  namespaced: true,
};

/** Held on a VirtualMachineImage until its file is removed from the domain. */
export const IMAGE_FINALIZER = 'keyvirt.io/image-cleanup';

// The writes the VM controller (and the HA controller) make on the VirtualMachine object
// itself: metadata and spec, by merge or JSON PATCH, never UPDATE; a VM gone meanwhile is no error.
import type { VirtualMachine } from '@keyvirt/crds';
import { isNotFound } from '../runtime/kube-client.ts';
import { keyOf, objectPath, refOfKey } from '../runtime/resource.ts';
import { virtualMachineType } from './names.ts';

/** The API writes the controller makes on the VM object itself (PATCH, never UPDATE). */
export interface VmWriter {
  patch(vm: VirtualMachine, body: unknown, type: 'merge' | 'json'): Promise<void>;
}

/** Patches the VM object (metadata, spec) with a merge or JSON patch. */
export function vmPatcher(client: { patch(path: string, body: unknown, type: 'merge' | 'json'): Promise<unknown> }): VmWriter {
  return {
    patch: async (vm, body, type) => {
      try {
        await client.patch(objectPath(virtualMachineType, refOfKey(keyOf(vm.metadata))), body, type);
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    },
  };
}

// The direct kernel boot a VM asks for in its keyvirt.io/kernel-boot annotation (a
// development and test feature): parsed with zod, or a message naming what is wrong.
import type { VirtualMachine } from '@keyvirt/crds';
import { z } from 'zod';
import type { KernelBoot } from './launcher-pod.ts';
import { ANNOTATION_KERNEL_BOOT } from './names.ts';

const kernelBootSchema = z.object({
  kernel: z.string().startsWith('/'),
  initrd: z.string().startsWith('/').optional(),
  cmdline: z.string().max(4096).optional(),
});

/** The direct kernel boot the VM's annotation asks for, or why it cannot be used. */
export function parseKernelBoot(vm: VirtualMachine): KernelBoot | undefined | string {
  const raw = vm.metadata.annotations?.[ANNOTATION_KERNEL_BOOT];
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return `annotation ${ANNOTATION_KERNEL_BOOT} is not JSON`;
  }
  const parsed = kernelBootSchema.safeParse(json);
  return parsed.success ? parsed.data : `annotation ${ANNOTATION_KERNEL_BOOT}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
}


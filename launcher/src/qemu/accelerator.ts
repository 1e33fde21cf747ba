// Chooses QEMU's accelerator: KVM when the host CPU advertises hardware virtualization
// and /dev/kvm opens; TCG (emulation) only when the VM or the launcher allows it.
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { Accelerator } from './command-line.ts';

export class AcceleratorUnavailableError extends Error {
  override name = 'AcceleratorUnavailableError';
}

export interface AcceleratorProbe {
  readCpuinfo: () => Promise<string>;
  /** Resolves when /dev/kvm can be opened read-write, rejects otherwise. */
  openKvm: () => Promise<void>;
}

export const hostAcceleratorProbe: AcceleratorProbe = {
  readCpuinfo: () => readFile('/proc/cpuinfo', 'utf8'),
  openKvm: async () => {
    const fh = await open('/dev/kvm', constants.O_RDWR);
    await fh.close();
  },
};

export interface AcceleratorChoice {
  accelerator: Accelerator;
  /** Why this accelerator was chosen, for status and logs. */
  reason: string;
}

/** Whether any CPU in /proc/cpuinfo lists `vmx` (Intel VT-x) or `svm` (AMD-V) among its flags. */
export function cpuinfoHasVirtualization(cpuinfo: string): boolean {
  return cpuinfo
    .split('\n')
    .filter((line) => /^flags\s*:/.test(line))
    .some((line) => /\s(vmx|svm)(\s|$)/.test(line));
}

export async function chooseAccelerator(allowEmulation: boolean, probe: AcceleratorProbe = hostAcceleratorProbe): Promise<AcceleratorChoice> {
  const cpuinfo = await probe.readCpuinfo().catch(() => '');
  let problem: string;
  if (!cpuinfoHasVirtualization(cpuinfo)) {
    problem = 'the host CPU advertises no hardware virtualization (no vmx/svm flag)';
  } else {
    try {
      await probe.openKvm();
      return { accelerator: 'kvm', reason: 'hardware virtualization available and /dev/kvm opens' };
    } catch (err) {
      problem = `/dev/kvm cannot be opened: ${(err as Error).message}`;
    }
  }
  if (allowEmulation) return { accelerator: 'tcg', reason: `emulation allowed and ${problem}` };
  throw new AcceleratorUnavailableError(`KVM is unavailable (${problem}) and emulation is not allowed`);
}

// What a launcher pod requests: the guest plus what the launcher and QEMU need on top
// of it. The overhead model follows KubeVirt's (a fixed part, guest RAM / 512 for page
// tables, a per-vCPU part), with the fixed parts measured on a running KeyVirt launcher
// (docs/adr/0062-launcher-pod.md), plus QEMU's TCG translation cache when the VM may run
// under emulation.
import { parseQuantity, type VirtualMachineTemplate } from '@keyvirt/crds';

const MiB = 1024 * 1024;

/**
 * The launcher process (Node.js, the HTTP API, QMP and agent clients), as its image runs
 * it (one bundled script under `--lite-mode`, docs/adr/0077 and 0111), measured with the
 * guest agent connected: ~60 MiB resident, of which ~20 MiB its own (anonymous) and ~41
 * MiB the node binary's pages. Those are one file for every launcher and the node agent
 * of a node (one image layer, docs/adr/0116), so the kernel keeps and charges them once:
 * on a real kubelet + containerd node a launcher container is charged 20.6–23.2 MiB
 * beside QEMU's own memory, the first on a fresh node included (`npm run bench --
 * apply-to-running`, real-node part); in a pod whose guest it serves DHCP the launcher
 * held up to 24 MiB of its own. The request covers that, what an incoming migration
 * loads (node:tls, ~4 MiB) and a margin; pages of the binary that a launcher faults
 * before any other Node process of its node did are page cache, which the kernel
 * reclaims before it fails an allocation. Nothing else runs in the pod beside QEMU.
 */
export const LAUNCHER_PROCESS_BYTES = 40 * MiB;
/**
 * A held pod's own processes beside QEMU when the node agent runs its launcher (ADR
 * 0134): the pod script's three bash processes, 7.0–7.5 MiB resident of which 1.1–1.2
 * MiB private (`npm run bench -- held-pod`); the rest is bash's and libc's pages.
 */
export const HELD_POD_PROCESS_BYTES = 8 * MiB;
/** QEMU itself beyond guest RAM: devices, VNC, block layer, migration buffers. */
export const QEMU_FIXED_BYTES = 64 * MiB;
export const PER_VCPU_BYTES = 8 * MiB;
/** QEMU's TCG translation-block cache as it fills under a booting Linux guest. */
export const TCG_CACHE_BYTES = 128 * MiB;
/** Host CPU share per vCPU (KubeVirt's default cpuAllocationRatio of 10). */
export const MILLICPU_PER_VCPU = 100;
export const LAUNCHER_MILLICPU = 100;

export function vcpuCount(template: VirtualMachineTemplate): number {
  const c = template.cpu;
  return c.sockets * c.cores * c.threads;
}

export function guestMemoryBytes(template: VirtualMachineTemplate): number {
  const bytes = parseQuantity(template.memory.size);
  if (bytes === undefined) throw new Error(`memory.size ${template.memory.size} is not a quantity`);
  return Math.ceil(bytes);
}

/** Memory the launcher pod needs beyond the guest RAM; `held`: the node agent runs its launcher. */
export function memoryOverheadBytes(template: VirtualMachineTemplate, mayEmulate: boolean, held = false): number {
  const guest = guestMemoryBytes(template);
  return (
    (held ? HELD_POD_PROCESS_BYTES : LAUNCHER_PROCESS_BYTES) +
    QEMU_FIXED_BYTES +
    Math.ceil(guest / 512) +
    PER_VCPU_BYTES * vcpuCount(template) +
    (mayEmulate ? TCG_CACHE_BYTES : 0)
  );
}

export interface LauncherResources {
  requests: Record<string, string>;
  limits: Record<string, string>;
  overheadBytes: number;
}

/** The launcher container's resources. Dedicated CPUs make the pod Guaranteed (requests = limits). */
export function launcherResources(template: VirtualMachineTemplate, mayEmulate: boolean, held = false): LauncherResources {
  const overheadBytes = memoryOverheadBytes(template, mayEmulate, held);
  const memory = String(Math.ceil((guestMemoryBytes(template) + overheadBytes) / MiB)) + 'Mi';
  const vcpus = vcpuCount(template);
  const devices: Record<string, string> = {};
  for (const d of template.hostDevices) devices[d.resourceName] = String(Number(devices[d.resourceName] ?? '0') + 1);
  if (template.cpu.dedicatedCpuPlacement) {
    const guaranteed = { cpu: String(vcpus + 1), memory, ...devices };
    return { requests: guaranteed, limits: guaranteed, overheadBytes };
  }
  return {
    requests: { cpu: `${vcpus * MILLICPU_PER_VCPU + LAUNCHER_MILLICPU}m`, memory, ...devices },
    limits: { ...devices },
    overheadBytes,
  };
}

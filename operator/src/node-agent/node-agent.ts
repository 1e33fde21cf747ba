// The node agent's work: read the host (cpuinfo, /dev/kvm, PCI sysfs, the
// userfaultfd sysctl, which it may set: docs/adr/0057), describe
// the node, and patch the Node's labels, annotations and extended resources when
// they differ. Runs once per interval until stopped; every root is injectable so
// tests read fixture trees.
import { constants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { describeCpu } from './cpu-features.ts';
import { describeNode, type KvmProbe, type NodeDescription } from './node-description.ts';
import { NodeView, nodePatches } from './node-patch.ts';
import { assessPciDevices, listPciDevices } from './pci-discovery.ts';
import { ensurePostCopy, type PostCopyOptions } from './post-copy.ts';

export interface HostRoots {
  /** Where sysfs is mounted (/sys). */
  readonly sysfs: string;
  /** Where procfs is mounted (/proc). */
  readonly procfs: string;
  /** Where device nodes live (/dev). */
  readonly dev: string;
}

export const HOST_ROOTS: HostRoots = { sysfs: '/sys', procfs: '/proc', dev: '/dev' };

/** The Node API calls the agent needs; bodies are JSON merge patches. */
export interface NodeApi {
  readNode: (name: string) => Promise<unknown>;
  patchNode: (name: string, patch: object) => Promise<void>;
  patchNodeStatus: (name: string, patch: object) => Promise<void>;
}

export class NodeReadError extends Error {
  override readonly name = 'NodeReadError';
}

/** /dev/kvm's device number: misc major 10, minor 232. */
const KVM_RDEV = (10 << 8) | 232;

async function probeKvm(roots: HostRoots, hardwareVirtualization: boolean): Promise<KvmProbe> {
  const path = join(roots.dev, 'kvm');
  try {
    const fh = await open(path, constants.O_RDWR);
    await fh.close();
    return { hardwareVirtualization, deviceOpens: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // An unprivileged agent may be denied the device by its cgroup while launcher pods
    // (which are given /dev/kvm) can open it: the KVM character device is then enough.
    if (code === 'EPERM' || code === 'EACCES') {
      const info = await stat(path).catch(() => undefined);
      if (info?.isCharacterDevice() === true && info.rdev === KVM_RDEV) return { hardwareVirtualization, deviceOpens: true };
    }
    return { hardwareVirtualization, deviceOpens: false, deviceError: (err as Error).message };
  }
}

/** Post-copy readiness from the host's /proc/sys/vm under `roots`, the sysctl left as it is. */
export function postCopyReadOnly(roots: HostRoots): PostCopyOptions {
  return { sysctlVmDir: join(roots.procfs, 'sys/vm'), enable: false };
}

/** Reads the host under `roots` (and sets vm.unprivileged_userfaultfd when `postCopy` allows) and describes it. */
export async function describeHost(roots: HostRoots, postCopy: PostCopyOptions = postCopyReadOnly(roots)): Promise<NodeDescription> {
  const cpuinfo = await readFile(join(roots.procfs, 'cpuinfo'), 'utf8');
  const cpu = describeCpu(cpuinfo);
  const hardwareVirtualization = cpu.features.includes('vmx') || cpu.features.includes('svm');
  const [probe, devices, postCopyProbe] = await Promise.all([probeKvm(roots, hardwareVirtualization), listPciDevices(roots.sysfs), ensurePostCopy(postCopy)]);
  return describeNode(cpu, probe, assessPciDevices(devices), postCopyProbe);
}

export interface SyncResult {
  readonly labelsChanged: boolean;
  readonly resourcesChanged: boolean;
}

/** One pass: describe the host and patch the node where it differs. */
export async function syncNode(api: NodeApi, nodeName: string, roots: HostRoots, postCopy?: PostCopyOptions): Promise<SyncResult> {
  const description = await describeHost(roots, postCopy);
  const parsed = NodeView.safeParse(await api.readNode(nodeName));
  if (!parsed.success) throw new NodeReadError(`node ${nodeName} has an unexpected shape: ${parsed.error.message}`);
  const patches = nodePatches(parsed.data, description);
  if (patches.metadata !== undefined) await api.patchNode(nodeName, patches.metadata);
  if (patches.status !== undefined) await api.patchNodeStatus(nodeName, patches.status);
  return { labelsChanged: patches.metadata !== undefined, resourcesChanged: patches.status !== undefined };
}

export interface NodeAgentOptions {
  readonly api: NodeApi;
  readonly nodeName: string;
  readonly roots: HostRoots;
  readonly intervalMs: number;
  readonly log: Logger;
  /** Where the host's /proc/sys/vm is and whether to set vm.unprivileged_userfaultfd; read-only under `roots` when absent. */
  readonly postCopy?: PostCopyOptions | undefined;
}

/** Syncs now and then every `intervalMs` until `signal` aborts; a failed pass is logged and retried next interval. */
export async function runNodeAgent(options: NodeAgentOptions, signal: AbortSignal): Promise<void> {
  const { api, nodeName, roots, intervalMs, log, postCopy } = options;
  while (!signal.aborted) {
    try {
      const result = await syncNode(api, nodeName, roots, postCopy);
      if (result.labelsChanged || result.resourcesChanged) log.info({ node: nodeName, ...result }, 'node description updated');
      else log.debug({ node: nodeName }, 'node description unchanged');
    } catch (err) {
      log.error({ err, node: nodeName }, 'node sync failed');
    }
    try {
      await sleep(intervalMs, undefined, { signal });
    } catch {
      return;
    }
  }
}

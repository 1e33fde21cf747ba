// cgroup v1 placement and limits (the v2 hierarchy here has no controllers).
// Layout: /sys/fs/cgroup/<controller>/keyvirt/<node>/<pod-uid>/<container>; the
// simulator itself joins the node's freezer group so that freezing the node stops
// both its heartbeats and every process of its pods.
import fs from 'node:fs';
import path from 'node:path';

export const cgroupRoot = '/sys/fs/cgroup';
const limitedControllers = ['memory', 'cpu'] as const;

export interface ContainerLimits {
  readonly memoryBytes?: number;
  /** CPU limit in millicores. */
  readonly cpuMillis?: number;
  /** CPU request in millicores (cpu.shares). */
  readonly cpuRequestMillis?: number;
}

export function nodeCgroup(controller: string, node: string): string {
  return path.join(cgroupRoot, controller, 'keyvirt', node);
}

function containerCgroup(controller: string, node: string, podUid: string, container: string): string {
  return path.join(nodeCgroup(controller, node), podUid, container);
}

/** Moves the calling process into the node's freezer group. */
export function joinNodeFreezer(node: string): void {
  const dir = nodeCgroup('freezer', node);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'cgroup.procs'), `${process.pid}\n`);
}

/** Creates the container's groups with its limits; returns the cgroup.procs files to join. */
export function prepareContainerCgroups(node: string, podUid: string, container: string, limits: ContainerLimits): string[] {
  const procs: string[] = [];
  for (const controller of limitedControllers) {
    const dir = containerCgroup(controller, node, podUid, container);
    fs.mkdirSync(dir, { recursive: true });
    procs.push(path.join(dir, 'cgroup.procs'));
  }
  const memory = containerCgroup('memory', node, podUid, container);
  fs.writeFileSync(path.join(memory, 'memory.limit_in_bytes'), limits.memoryBytes === undefined ? '-1' : `${limits.memoryBytes}`);
  const cpu = containerCgroup('cpu', node, podUid, container);
  fs.writeFileSync(path.join(cpu, 'cpu.cfs_period_us'), '100000');
  fs.writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), limits.cpuMillis === undefined ? '-1' : `${Math.max(1000, limits.cpuMillis * 100)}`);
  const shares = limits.cpuRequestMillis === undefined ? 2 : Math.max(2, Math.round((limits.cpuRequestMillis * 1024) / 1000));
  fs.writeFileSync(path.join(cpu, 'cpu.shares'), `${shares}`);
  return procs;
}

/** Removes a pod's groups (they must be empty). Missing groups are ignored. */
export function removePodCgroups(node: string, podUid: string): void {
  for (const controller of limitedControllers) removeTree(path.join(nodeCgroup(controller, node), podUid));
}

/** Removes every group of the node (used when the node is torn down). */
export function removeNodeCgroups(node: string): void {
  for (const controller of [...limitedControllers, 'freezer']) removeTree(nodeCgroup(controller, node));
}

function removeTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.isDirectory()) removeTree(path.join(dir, entry.name));
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    // still has processes (they are being killed); a later cleanup removes it
  }
}

/** Parses a Kubernetes quantity into bytes (memory) — e.g. 256Mi, 1G, 1e9. */
export function parseQuantity(text: string): number {
  const match = /^([0-9.]+(?:e[0-9]+)?)([a-zA-Z]*)$/.exec(text.trim());
  if (match === null) throw new RangeError(`invalid quantity ${text}`);
  const value = Number(match[1]);
  const suffixes: Record<string, number> = {
    '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, Pi: 1024 ** 5,
  };
  const factor = suffixes[match[2] ?? ''];
  if (factor === undefined) throw new RangeError(`invalid quantity suffix in ${text}`);
  return value * factor;
}

/** Parses a CPU quantity into millicores — e.g. 500m, 2, 0.5. */
export function parseCpuMillis(text: string): number {
  return Math.round(parseQuantity(text) * 1000);
}

// The host side of a real node: its network namespace on the cluster bridge (with routes
// to the other real nodes' pods), its cgroup root under every cgroup v1 hierarchy, and
// the processes left behind by its containerd (shims, containers) when it goes away.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cgroupTree, killAll, pidsIn } from './cgroup-processes.ts';
import { readCmdline } from './daemons.ts';
import { deleteNetns, ip, linkExists, netnsExists } from './host-network.ts';
import { network } from './layout.ts';
import { nodeNetwork, podRoutesFrom, realNodesCgroupParent } from './real-node-config.ts';
import type { RealNodePlan } from './real-node-config.ts';

const cgroupMount = '/sys/fs/cgroup';

/** The node's namespace: eth0 on the cluster bridge with the node address, forwarding on. */
export function ensureRealNodeNetwork(plan: RealNodePlan): void {
  const { address, gateway } = nodeNetwork(plan);
  if (!netnsExists(plan.netns)) ip(['netns', 'add', plan.netns]);
  if (!linkExists(plan.uplinkHost)) {
    ip(['link', 'add', plan.uplinkHost, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', plan.netns]);
  }
  ip(['link', 'set', plan.uplinkHost, 'master', network.bridge, 'up']);
  const inNode = (args: readonly string[]): string => ip(['-n', plan.netns, ...args]);
  if (!inNode(['-4', '-o', 'addr', 'show', 'dev', 'eth0']).includes(address)) inNode(['addr', 'add', address, 'dev', 'eth0']);
  inNode(['link', 'set', 'eth0', 'up']);
  inNode(['link', 'set', 'lo', 'up']);
  inNode(['route', 'replace', 'default', 'via', gateway]);
  execFileSync('ip', ['netns', 'exec', plan.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // The host reaches the node's pods through the node.
  ip(['route', 'replace', plan.podCidr, 'via', plan.nodeIp, 'dev', network.bridge]);
}

/** Routes between the running real nodes' namespaces: each node's pods straight over the bridge. */
export function syncPodRoutes(plans: readonly RealNodePlan[]): void {
  for (const plan of plans) {
    if (!netnsExists(plan.netns)) continue;
    for (const route of podRoutesFrom(plan, plans)) {
      ip(['-n', plan.netns, 'route', 'replace', route.dst, 'via', route.via, 'dev', 'eth0']);
    }
  }
}

export function deleteRealNodeNetwork(plan: RealNodePlan): void {
  try {
    ip(['route', 'del', plan.podCidr]);
  } catch {
    // no such route (the bridge went first, or it was never added)
  }
  deleteNetns(plan.netns);
  try {
    if (linkExists(plan.uplinkHost)) ip(['link', 'del', plan.uplinkHost]);
  } catch (err) {
    if (linkExists(plan.uplinkHost)) throw err;
  }
}

/** Mounted cgroup v1 hierarchies (cpu, memory, pids, name=systemd, …). */
function hierarchies(): string[] {
  return fs.readdirSync(cgroupMount).filter((h) => {
    const dir = path.join(cgroupMount, h);
    return h !== 'unified' && fs.existsSync(path.join(dir, 'cgroup.procs')) && !fs.lstatSync(dir).isSymbolicLink();
  });
}

/** A new cpuset cgroup has no CPUs nor memory nodes: it takes its parent's. */
function inheritCpuset(parent: string, dir: string): void {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if (fs.readFileSync(path.join(dir, file), 'utf8').trim() !== '') continue;
    fs.writeFileSync(path.join(dir, file), fs.readFileSync(path.join(parent, file), 'utf8').trim());
  }
}

/** Creates the kubelet's cgroup root in every hierarchy (cpuset copies its parent's cpus and mems). */
export function ensureCgroupRoot(plan: RealNodePlan): void {
  for (const h of hierarchies()) {
    let parent = path.join(cgroupMount, h);
    for (const part of plan.cgroupRoot.split('/').filter((p) => p !== '')) {
      const dir = path.join(parent, part);
      fs.mkdirSync(dir, { recursive: true });
      if (h === 'cpuset') inheritCpuset(parent, dir);
      parent = dir;
    }
  }
}

/** containerd shims serving this node's containerd (their command line names its socket). */
function shimPids(plan: RealNodePlan): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const cmdline = readCmdline(pid);
    // readCmdline joins the arguments with spaces and ends with one.
    if (cmdline?.includes('containerd-shim') === true && cmdline.includes(` -address ${plan.containerdSocket} `)) out.push(pid);
  }
  return out;
}

/** SIGKILLs every container of the node (its cgroup tree) and its containerd shims. */
export async function killNodeWorkloads(plan: RealNodePlan): Promise<void> {
  await killAll(pidsIn(cgroupTree(path.join(cgroupMount, 'pids', plan.cgroupRoot))));
  await killAll(shimPids(plan));
}

/** Removes the node's cgroup root from every hierarchy (leaves first); the parent too once empty. */
export function removeCgroupRoot(plan: RealNodePlan): void {
  for (const h of hierarchies()) {
    for (const dir of [...cgroupTree(path.join(cgroupMount, h, plan.cgroupRoot)), path.join(cgroupMount, h, realNodesCgroupParent)]) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // absent, or processes still leaving
      }
    }
  }
}

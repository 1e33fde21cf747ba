// Real nodes of the local cluster: per node one containerd and one kubelet, both in the
// node's own network namespace (on the cluster bridge, like a simulated node) and in a
// mount namespace of their own in which every host path they hard-code is the node's own
// directory. Started on demand (test/support/real-nodes.ts), stopped with the cluster.
// Layout and trade-offs: docs/adr/0076-real-nodes-on-one-host.md.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { daemonPid, readCmdline, startDaemon, stopDaemon, waitFor } from './daemons.ts';
import type { ClusterLayout } from './layout.ts';
import { kubectl } from './kubectl.ts';
import { claimIndex, nodeCondition, nodeIndexOf, releaseNodeIndex } from './nodes.ts';
import {
  containerdConfigText, cniConfigText, kubeletArgs, kubeletConfigText, kubeletKernelTunables, kubeletKubeconfigText,
  mountNamespaceScript, privateDirOf, privateHostPaths, realNodeNames, realNodePlan,
} from './real-node-config.ts';
import type { RealNodePlan } from './real-node-config.ts';
import {
  deleteRealNodeNetwork, ensureCgroupRoot, ensureRealNodeNetwork, killNodeWorkloads, removeCgroupRoot, syncPodRoutes,
} from './real-node-host.ts';
import { importImage, pauseImage } from './real-node-images.ts';
import type { ImageArchive } from './real-node-images.ts';
import { mintRealNodeCertificates } from './real-node-pki.ts';

export class RealNodeError extends Error {
  override readonly name = 'RealNodeError';
}

export interface RealNode {
  readonly name: string;
  readonly nodeIp: string;
  readonly podCidr: string;
  /** containerd's socket (for `ctr --address … -n k8s.io`). */
  readonly containerdSocket: string;
  readonly kubeletRootDir: string;
  /** The host directory this node's kubelet knows as /var/lib/kubelet/device-plugins. */
  readonly devicePluginDir: string;
  /** One file per kernel tunable (`kernel.panic`, …) the kubelet sees in place of the host's value. */
  readonly tunablesDir: string;
}

/** Where every real node keeps its state: .keyvirt/real-nodes/<name>. */
export function realNodesDir(layout: ClusterLayout): string {
  return path.join(layout.stateDir, 'real-nodes');
}

/**
 * The host directory that node `name`'s kubelet (and every pod on that node, through a
 * hostPath) sees as /var/lib/kubelet/device-plugins: its kubelet.sock is there, and a
 * device plugin registers by putting its own socket there.
 */
export function realNodeDevicePluginDir(layout: ClusterLayout, name: string): string {
  return privateDirOf(realNodesDir(layout), name, '/var/lib/kubelet/device-plugins');
}

const containerdDaemon = (name: string): string => `real-node-${name}-containerd`;
const kubeletDaemon = (name: string): string => `real-node-${name}-kubelet`;
const containerdMarker = (plan: RealNodePlan): string => `--config ${plan.containerdConfig}`;
const kubeletMarker = (plan: RealNodePlan): string => `--config=${plan.kubeletConfig}`;

/** The flags the API server needs to reach kubelets (client certificate, CA, address) and authorize nodes. */
const apiServerKubeletFlags = ['--kubelet-client-certificate=', '--kubelet-certificate-authority=', '--authorization-mode=Node,'];

function assertApiServerReady(layout: ClusterLayout): void {
  const pid = daemonPid(layout, 'kube-apiserver', layout.pkiDir);
  const cmdline = pid === undefined ? undefined : readCmdline(pid);
  if (cmdline === undefined) throw new RealNodeError('the local cluster is not running: start it first (ensureCluster or npm start)');
  const missing = apiServerKubeletFlags.filter((f) => !cmdline.includes(f));
  if (missing.length > 0) {
    throw new RealNodeError(`kube-apiserver (pid ${pid}) runs without ${missing.join(', ')}: it was started before real nodes existed; `
      + 'it restarts with them once no other process uses the cluster (npm stop, or wait for the idle stop)');
  }
}

const kubeletApiBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: keyvirt-apiserver-kubelet-client
  labels: { app.kubernetes.io/part-of: keyvirt-local-cluster }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin }
subjects:
  - { apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client }
`;

function buildKubelet(layout: ClusterLayout): string {
  execFileSync('bash', [path.join(layout.root, 'hack/k8s/kubelet/build.sh')], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, KEYVIRT_K8S_BIN: layout.binDir },
  });
  return path.join(layout.binDir, 'kubelet');
}

function running(layout: ClusterLayout, plan: RealNodePlan): { containerd?: number; kubelet?: number } {
  return {
    containerd: daemonPid(layout, containerdDaemon(plan.name), containerdMarker(plan)),
    kubelet: daemonPid(layout, kubeletDaemon(plan.name), kubeletMarker(plan)),
  };
}

function planOf(layout: ClusterLayout, name: string, index: number): RealNodePlan {
  return realNodePlan(realNodesDir(layout), name, index);
}

/** The tunables whose host value differs from the kubelet's: each is shown to it as a file. */
function differingTunables(plan: RealNodePlan): string[] {
  fs.mkdirSync(plan.tunablesDir, { recursive: true });
  const out: string[] = [];
  for (const [key, value] of Object.entries(kubeletKernelTunables)) {
    if (fs.readFileSync(`/proc/sys/${key}`, 'utf8').trim() === value) continue;
    fs.writeFileSync(path.join(plan.tunablesDir, key.replaceAll('/', '.')), `${value}\n`);
    out.push(key);
  }
  return out;
}

/** The configuration files of a node and their contents. */
function nodeFiles(layout: ClusterLayout, plan: RealNodePlan, sandboxImage: string): Array<{ file: string; text: string }> {
  const ca = path.join(layout.pkiDir, 'ca.crt');
  return [
    { file: plan.containerdConfig, text: containerdConfigText(plan, sandboxImage) },
    { file: path.join(plan.cniConfDir, '10-keyvirt-real-node.conflist'), text: cniConfigText(plan) },
    { file: plan.kubeletConfig, text: kubeletConfigText(plan, ca) },
    { file: plan.kubeletKubeconfig, text: kubeletKubeconfigText(plan, ca) },
  ];
}

/** True when the running node was started from this code's configuration (files and kubelet flags). */
function upToDate(layout: ClusterLayout, plan: RealNodePlan, sandboxImage: string, kubeletPid: number): boolean {
  for (const { file, text } of nodeFiles(layout, plan, sandboxImage)) {
    try {
      if (fs.readFileSync(file, 'utf8') !== text) return false;
    } catch {
      return false;
    }
  }
  const cmdline = readCmdline(kubeletPid) ?? '';
  return kubeletArgs(plan).every((arg) => cmdline.includes(` ${arg} `));
}

function writeNodeFiles(layout: ClusterLayout, plan: RealNodePlan, sandboxImage: string): void {
  for (const dir of [plan.kubeletRootDir, plan.containerdRoot, plan.containerdState, plan.cniConfDir, ...Object.values(plan.privateDirs)]) {
    fs.mkdirSync(dir, { recursive: true });
  }
  // The bind targets must exist on the host; they stay empty there.
  for (const target of privateHostPaths) fs.mkdirSync(target, { recursive: true });
  mintRealNodeCertificates(layout.pkiDir, plan);
  for (const { file, text } of nodeFiles(layout, plan, sandboxImage)) fs.writeFileSync(file, text, { mode: 0o600 });
}

async function waitContainerd(plan: RealNodePlan, pid: number, logPath: string): Promise<void> {
  await waitFor(`containerd of ${plan.name}`, () => {
    try {
      execFileSync('ctr', ['--address', plan.containerdSocket, 'version'], { stdio: 'ignore', timeout: 5000 });
      return Promise.resolve(true);
    } catch {
      return Promise.resolve(false);
    }
  }, { timeoutMs: 60_000, pid, logPath });
}

/**
 * Starts real node `name` (or finds it running) and waits until its Node is Ready; the
 * pause image, and each of `images`, is imported into its containerd when it lacks it.
 */
export async function startRealNode(layout: ClusterLayout, name: string, log: Logger, images: readonly ImageArchive[] = []): Promise<RealNode> {
  assertApiServerReady(layout);
  const index = claimIndex(layout, name);
  const plan = planOf(layout, name, index);
  const kubeletBin = buildKubelet(layout);
  const pause = pauseImage();
  let pids = running(layout, plan);
  if (pids.containerd === undefined || pids.kubelet === undefined || !upToDate(layout, plan, pause.ref, pids.kubelet)) {
    if (pids.containerd !== undefined || pids.kubelet !== undefined) log.info({ node: name }, 'real node incomplete or started from another configuration; starting it afresh');
    await stopRealNodeProcesses(layout, plan);
    fs.rmSync(plan.dir, { recursive: true, force: true });
    writeNodeFiles(layout, plan, pause.ref);
    ensureRealNodeNetwork(plan);
    ensureCgroupRoot(plan);
    const containerd = startDaemon(layout, {
      name: containerdDaemon(name),
      command: '/usr/bin/nsenter',
      marker: containerdMarker(plan),
      args: [
        `--net=/run/netns/${plan.netns}`, '--', '/usr/bin/unshare', '--mount', '--propagation', 'slave', '--',
        '/bin/sh', '-c', mountNamespaceScript(plan, differingTunables(plan)), 'sh', '/usr/bin/containerd', '--config', plan.containerdConfig,
      ],
    });
    await waitContainerd(plan, containerd, path.join(layout.logDir, `${containerdDaemon(name)}.log`));
    importImage(plan.containerdSocket, path.join(plan.dir, 'images'), pause);
    kubectl(layout, ['apply', '-f', '-'], kubeletApiBinding);
    const kubelet = startDaemon(layout, {
      name: kubeletDaemon(name),
      command: '/usr/bin/nsenter',
      marker: kubeletMarker(plan),
      args: [`--target=${containerd}`, '--mount', '--net', '--', kubeletBin, ...kubeletArgs(plan)],
    });
    pids = { containerd, kubelet };
    log.info({ node: name, index, nodeIp: plan.nodeIp, podCidr: plan.podCidr, containerd, kubelet }, 'real node started');
  }
  for (const image of images) importImage(plan.containerdSocket, path.join(plan.dir, 'images'), image);
  syncPodRoutes(runningPlans(layout));
  await waitFor(`real node ${name}`, () => Promise.resolve(nodeCondition(layout, name, 'Ready') === 'True'), {
    timeoutMs: 120_000, pid: pids.kubelet, logPath: path.join(layout.logDir, `${kubeletDaemon(name)}.log`),
  });
  return realNodeOf(layout, plan);
}

function realNodeOf(layout: ClusterLayout, plan: RealNodePlan): RealNode {
  return {
    name: plan.name, nodeIp: plan.nodeIp, podCidr: plan.podCidr, containerdSocket: plan.containerdSocket,
    kubeletRootDir: plan.kubeletRootDir, devicePluginDir: realNodeDevicePluginDir(layout, plan.name), tunablesDir: plan.tunablesDir,
  };
}

/** Plans of the real nodes that hold a slot and have a directory. */
function runningPlans(layout: ClusterLayout): RealNodePlan[] {
  const out: RealNodePlan[] = [];
  for (const name of knownRealNodes(layout)) {
    const index = nodeIndexOf(layout, name);
    if (index !== undefined) out.push(planOf(layout, name, index));
  }
  return out;
}

/**
 * The pids of a real node's containerd and kubelet (undefined when not running); both
 * live in the node's network and mount namespaces (`nsenter --target <pid> --net --mount`).
 */
export function realNodePids(layout: ClusterLayout, name: string): { containerd?: number; kubelet?: number } {
  return running(layout, planOf(layout, name, nodeIndexOf(layout, name) ?? 1));
}

/** Names of the real nodes that have state on this host. */
export function knownRealNodes(layout: ClusterLayout): string[] {
  try {
    return fs.readdirSync(realNodesDir(layout)).sort();
  } catch {
    return [];
  }
}

async function stopRealNodeProcesses(layout: ClusterLayout, plan: RealNodePlan): Promise<void> {
  await stopDaemon(layout, kubeletDaemon(plan.name), kubeletMarker(plan), 15_000);
  await killNodeWorkloads(plan);
  await stopDaemon(layout, containerdDaemon(plan.name), containerdMarker(plan), 15_000);
  // A shim started while containerd was stopping.
  await killNodeWorkloads(plan);
}

export interface StopRealNodeOptions {
  /** Also delete the Node object. */
  readonly deleteObject: boolean;
  /**
   * Keep the node's slot, so that it comes back with the same address and pod CIDR
   * (default: while its Node object stays).
   */
  readonly keepSlot?: boolean;
}

/**
 * Stops a real node: kubelet, every container (SIGKILL), containerd; removes its network,
 * cgroups and state. As the Node object stays, this is the node's power loss.
 */
export async function stopRealNode(layout: ClusterLayout, name: string, log: Logger, options: StopRealNodeOptions): Promise<void> {
  const index = nodeIndexOf(layout, name);
  // The index only shapes addresses; paths, markers and the cgroup root do not depend on it.
  const plan = planOf(layout, name, index ?? 1);
  await stopRealNodeProcesses(layout, plan);
  if (index !== undefined) deleteRealNodeNetwork(plan);
  for (let attempt = 0; ; attempt++) {
    removeCgroupRoot(plan);
    try {
      fs.rmSync(plan.dir, { recursive: true, force: true });
      break;
    } catch (err) {
      // A mount of the node's namespace lingers until its last process has gone.
      if (attempt >= 20) throw new RealNodeError(`cannot remove ${plan.dir}: ${String(err)}`);
      await sleep(250);
    }
  }
  if (index !== undefined && !(options.keepSlot ?? !options.deleteObject)) releaseNodeIndex(layout, index);
  if (options.deleteObject) {
    try {
      kubectl(layout, ['delete', 'node', name, '--ignore-not-found', '--wait=false']);
    } catch (err) {
      log.warn({ err, node: name }, 'could not delete the Node object');
    }
  }
  log.info({ node: name }, 'real node stopped');
}

/** Stops every real node (cluster teardown comes first to this, before the simulated nodes). */
export async function stopAllRealNodes(layout: ClusterLayout, log: Logger): Promise<void> {
  for (const name of knownRealNodes(layout)) await stopRealNode(layout, name, log, { deleteObject: false, keepSlot: false });
}

/** Starts the default real nodes, one after the other. */
export async function startRealNodes(layout: ClusterLayout, log: Logger, images: readonly ImageArchive[] = []): Promise<RealNode[]> {
  const nodes: RealNode[] = [];
  for (const name of realNodeNames) nodes.push(await startRealNode(layout, name, log, images));
  return nodes;
}


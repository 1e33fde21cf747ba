// Simulated nodes: each one a network namespace hung off the host bridge (veth
// uplink into the node's own bridge nbr0) and one node-simulator process running
// inside it, detached, with its log in .keyvirt/logs/nodesim-<name>.log.
// Node indexes (1..15) are claimed atomically under .keyvirt/nodes/index-<k>.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { cgroupTree, killAll, pidsIn } from './cgroup-processes.ts';
import { daemonPid, isAlive, startDaemon, stopDaemon, waitFor } from './daemons.ts';
import { deleteNetns, ip, linkExists, listNetns, netnsExists, pinBridgeAddress } from './host-network.ts';
import { network, nodeNetNames, nodeSlice } from './layout.ts';
import type { ClusterLayout } from './layout.ts';
import { kubectl } from './kubectl.ts';
import {
  failStorageView, hangStorageView, mountStorageView, restoreStorageView, storageViewMountPoint, unmountAllStorageViews,
  unmountStorageView,
} from './storage-views.ts';

export interface NodeOptions {
  readonly cpu?: string;
  readonly memory?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Taints as key=value:Effect. */
  readonly taints?: readonly string[];
  /**
   * A shared storage directory (a posix domain's path, or a directory above it) that this
   * node reaches through its own FUSE view, so that `storageHang`/`storageFail` can take
   * this node's storage away from it alone.
   */
  readonly storageRoot?: string;
  /**
   * `builtin` (the default): the node agent's device plugins run inside the simulator;
   * `external`: only the kubelet side runs, and a node agent process registers on
   * <nodes dir>/<name>/device-plugins/kubelet.sock.
   */
  readonly devicePlugin?: 'builtin' | 'external';
}

export interface SimulatedNode {
  readonly name: string;
  readonly index: number;
  readonly nodeIp: string;
  readonly pid: number | undefined;
}

export const defaultNodeNames: readonly string[] = ['keyvirt-node-1', 'keyvirt-node-2'];

function indexFile(layout: ClusterLayout, index: number): string {
  return path.join(layout.nodesDir, `index-${index}`);
}

function daemonName(name: string): string {
  return `nodesim-${name}`;
}

function marker(name: string): string {
  return `--node-name=${name} `;
}

/** The index a node holds, if any. */
export function nodeIndexOf(layout: ClusterLayout, name: string): number | undefined {
  for (let k = 1; k <= network.maxNodeIndex; k++) {
    try {
      if (fs.readFileSync(indexFile(layout, k), 'utf8').trim() === name) return k;
    } catch {
      // unclaimed
    }
  }
  return undefined;
}

/** Claims a free node slot (1..15) for `name`, or returns the one it holds; real nodes share these slots. */
export function claimIndex(layout: ClusterLayout, name: string): number {
  fs.mkdirSync(layout.nodesDir, { recursive: true });
  const held = nodeIndexOf(layout, name);
  if (held !== undefined) return held;
  for (let k = 1; k <= network.maxNodeIndex; k++) {
    try {
      fs.writeFileSync(indexFile(layout, k), `${name}\n`, { flag: 'wx' });
      return k;
    } catch {
      // taken
    }
  }
  throw new RangeError(`no free node slot: at most ${network.maxNodeIndex} simulated nodes`);
}

/** Frees a node slot claimed with `claimIndex`. */
export function releaseNodeIndex(layout: ClusterLayout, index: number): void {
  fs.rmSync(indexFile(layout, index), { force: true });
}

function ensureNodeNetwork(index: number): void {
  const { netns, uplinkHost } = nodeNetNames(index);
  const slice = nodeSlice(index);
  if (!netnsExists(netns)) ip(['netns', 'add', netns]);
  if (!linkExists(uplinkHost)) {
    ip(['link', 'add', uplinkHost, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  }
  ip(['link', 'set', uplinkHost, 'master', network.bridge, 'up']);
  const inNode = (args: readonly string[]): string => ip(['-n', netns, ...args]);
  if (!inNode(['-o', 'link', 'show']).includes(' nbr0:')) inNode(['link', 'add', 'nbr0', 'type', 'bridge']);
  // The node's address lives on nbr0, whose pod ports come and go: its MAC is fixed, one per node index.
  pinBridgeAddress('nbr0', `02:6b:76:01:${index.toString(16).padStart(2, '0')}:01`, ['-n', netns]);
  inNode(['link', 'set', 'eth0', 'master', 'nbr0', 'up']);
  if (!inNode(['-4', '-o', 'addr', 'show', 'dev', 'nbr0']).includes(`${slice.nodeIp}/`)) {
    inNode(['addr', 'add', `${slice.nodeIp}/${network.prefixLength}`, 'dev', 'nbr0']);
  }
  inNode(['link', 'set', 'nbr0', 'up']);
  inNode(['link', 'set', 'lo', 'up']);
  inNode(['route', 'replace', 'default', 'via', network.gateway]);
}

function deleteNodeNetwork(index: number): void {
  const { netns, uplinkHost } = nodeNetNames(index);
  for (const podNetns of listNetns(`kvp-${index}-`)) deleteNetns(podNetns);
  deleteNetns(netns);
  // Deleting the namespace destroys the veth pair asynchronously; the link may vanish under us.
  try {
    if (linkExists(uplinkHost)) ip(['link', 'del', uplinkHost]);
  } catch (err) {
    if (linkExists(uplinkHost)) throw err;
  }
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function kubernetesVersion(): string {
  const pins = fs.readFileSync(path.join(import.meta.dirname, '../k8s/pins.env'), 'utf8');
  return /^KUBERNETES_VERSION=(\S+)/m.exec(pins)?.[1] ?? 'unknown';
}

/** A hash of the simulator's sources: a running simulator built from other sources is replaced. */
function simulatorCodeHash(): string {
  const hash = createHash('sha256');
  const nodesim = path.join(import.meta.dirname, '../nodesim');
  const devicePlugin = path.join(import.meta.dirname, '../../operator/src/node-agent/device-plugin');
  const files = [
    ...fs.readdirSync(nodesim).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).sort().map((f) => path.join(nodesim, f)),
    path.join(import.meta.dirname, 'layout.ts'), path.join(import.meta.dirname, 'host-network.ts'),
    // The node agent's device plugins, which the simulator runs in its own process.
    ...fs.readdirSync(devicePlugin).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).sort().map((f) => path.join(devicePlugin, f)),
  ];
  for (const file of files) hash.update(file).update(fs.readFileSync(file));
  return hash.digest('hex').slice(0, 16);
}

/** Starts (or finds running) the simulator of node `name`; waits until the Node is Ready. */
export async function startNode(layout: ClusterLayout, name: string, log: Logger, options: NodeOptions = {}): Promise<SimulatedNode> {
  const index = claimIndex(layout, name);
  const slice = nodeSlice(index);
  const codeHash = simulatorCodeHash();
  const hashFile = path.join(layout.nodesDir, name, 'code-hash');
  let pid = daemonPid(layout, daemonName(name), marker(name));
  if (pid !== undefined && readText(hashFile) !== codeHash) {
    log.info({ node: name, pid }, 'node simulator sources changed; restarting it');
    await stopDaemon(layout, daemonName(name), marker(name), 15_000);
    pid = undefined;
  }
  if (pid === undefined) {
    ensureNodeNetwork(index);
    const stateDir = path.join(layout.nodesDir, name);
    fs.mkdirSync(stateDir, { recursive: true });
    const labels = Object.entries(options.labels ?? {}).map(([k, v]) => `--label=${k}=${v}`);
    const taints = (options.taints ?? []).map((t) => `--taint=${t}`);
    const storage = options.storageRoot === undefined ? [] : [
      `--storage-root=${path.resolve(options.storageRoot)}`,
      `--storage-view=${await mountStorageView(layout, name, path.resolve(options.storageRoot))}`,
    ];
    pid = startDaemon(layout, {
      name: daemonName(name),
      command: '/usr/bin/nsenter',
      marker: marker(name),
      args: [
        `--net=/run/netns/${nodeNetNames(index).netns}`, '--', process.execPath,
        path.join(import.meta.dirname, '../nodesim/main.ts'), `--node-name=${name}`, `--node-index=${index}`,
        `--kubeconfig=${layout.kubeconfig}`, `--state-dir=${stateDir}`, `--kubernetes-version=${kubernetesVersion()}`,
        `--cpu=${options.cpu ?? '8'}`, `--memory=${options.memory ?? '16Gi'}`, ...labels, ...taints, ...storage,
        `--device-plugin=${options.devicePlugin ?? 'builtin'}`,
      ],
    });
    fs.writeFileSync(hashFile, `${codeHash}\n`);
    log.info({ node: name, index, pid, nodeIp: slice.nodeIp }, 'node simulator started');
  }
  await waitNodeReady(layout, name, 60_000, pid);
  return { name, index, nodeIp: slice.nodeIp, pid };
}

export async function waitNodeReady(layout: ClusterLayout, name: string, timeoutMs: number, pid?: number): Promise<void> {
  await waitFor(`node ${name}`, () => Promise.resolve(nodeCondition(layout, name, 'Ready') === 'True'), {
    timeoutMs, pid, logPath: path.join(layout.logDir, `${daemonName(name)}.log`),
  });
}

/** The status of a node condition as the API server has it ('True', 'False', 'Unknown' or undefined). */
export function nodeCondition(layout: ClusterLayout, name: string, type: string): string | undefined {
  try {
    const out = kubectl(layout, ['get', 'node', name, '-o', `jsonpath={.status.conditions[?(@.type=="${type}")].status}`]);
    return out.trim() === '' ? undefined : out.trim();
  } catch {
    return undefined;
  }
}

/** Stops a node's simulator (its pods go with it) and removes its network; with `deleteObject`, also the Node. */
export async function stopNode(layout: ClusterLayout, name: string, log: Logger, options: { deleteObject: boolean }): Promise<void> {
  const index = nodeIndexOf(layout, name);
  // The storage view goes first: with its connection aborted, no process of the node
  // stays blocked on a hung view, so that the simulator and its pods can end.
  await unmountStorageView(layout, name);
  await stopDaemon(layout, daemonName(name), marker(name), 15_000);
  if (options.deleteObject) {
    try {
      kubectl(layout, ['delete', 'node', name, '--ignore-not-found', '--wait=false']);
    } catch (err) {
      log.warn({ err, node: name }, 'could not delete the Node object');
    }
  }
  if (index !== undefined) {
    // Pod processes die with the simulator; wait for them before removing cgroups.
    await sleep(200);
    deleteNodeNetwork(index);
    removeCgroupDirs(name);
    fs.rmSync(path.join(layout.nodesDir, name), { recursive: true, force: true });
    fs.rmSync(indexFile(layout, index), { force: true });
  }
  log.info({ node: name }, 'node stopped');
}

function removeCgroupDirs(node: string): void {
  for (const controller of ['memory', 'cpu', 'freezer']) {
    const dir = path.join('/sys/fs/cgroup', controller, 'keyvirt', node);
    removeEmptyTree(dir);
  }
}

function removeEmptyTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) removeEmptyTree(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // processes still leaving
  }
}

/** Names of the nodes that hold a slot. */
export function listNodes(layout: ClusterLayout): SimulatedNode[] {
  const out: SimulatedNode[] = [];
  for (let k = 1; k <= network.maxNodeIndex; k++) {
    let name: string;
    try {
      name = fs.readFileSync(indexFile(layout, k), 'utf8').trim();
    } catch {
      continue;
    }
    out.push({ name, index: k, nodeIp: nodeSlice(k).nodeIp, pid: daemonPid(layout, daemonName(name), marker(name)) });
  }
  return out;
}

/** How long a crashed node's processes may take to end before the crash is reported as failed. */
const CRASH_DEADLINE_MS = 15_000;

/**
 * Fault hook: the node loses power. The simulator and every process of its pods (the
 * node's freezer group holds them all) are SIGKILLed together, and the call returns once
 * none is alive: its heartbeats have stopped and no pod of it answers any more. The
 * parent-death signals would end the pods too, but one hop after another (setpriv, then
 * unshare, then the container's PID namespace), and on a busy machine a pod still
 * answered right after the simulator was gone.
 */
export async function crashNode(layout: ClusterLayout, name: string): Promise<void> {
  const pid = daemonPid(layout, daemonName(name), marker(name));
  if (pid === undefined) return;
  const group = path.join('/sys/fs/cgroup/freezer/keyvirt', name);
  const deadline = Date.now() + CRASH_DEADLINE_MS;
  process.kill(pid, 'SIGKILL');
  for (;;) {
    const alive = [pid, ...pidsIn(cgroupTree(group))].filter((p) => isAlive(p));
    if (alive.length === 0) return;
    if (Date.now() > deadline) throw new Error(`node ${name} crashed, but its processes ${alive.join(', ')} are alive after ${CRASH_DEADLINE_MS} ms`);
    await killAll(alive);
  }
}

/** Fault hook: freeze (SIGSTOP-like, via the freezer cgroup) the simulator and all its pods, or thaw them. */
export function freezeNode(name: string, frozen: boolean): void {
  fs.writeFileSync(path.join('/sys/fs/cgroup/freezer/keyvirt', name, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
}

/** Fault hook: cut (link down) or restore the node's uplink; its pods lose the network with it. */
export function cutNodeNetwork(layout: ClusterLayout, name: string, cut: boolean): void {
  const index = nodeIndexOf(layout, name);
  if (index === undefined) throw new RangeError(`node ${name} is not known`);
  ip(['link', 'set', nodeNetNames(index).uplinkHost, cut ? 'down' : 'up']);
}

/** Stops every node simulator and removes their networks (cluster teardown). */
export async function stopAllNodes(layout: ClusterLayout, log: Logger): Promise<void> {
  for (const node of listNodes(layout)) {
    try {
      freezeNode(node.name, false);
    } catch {
      // not frozen / no freezer group
    }
    await stopNode(layout, node.name, log, { deleteObject: false });
  }
  for (const stray of listNetns('kvp-')) deleteNetns(stray);
  for (const stray of listNetns('kv-node-')) deleteNetns(stray);
  await unmountAllStorageViews(layout);
}

/** Fault hook: the node's storage view stops answering (bindfs SIGSTOP); its pods' shared-storage I/O hangs. */
export async function hangNodeStorage(layout: ClusterLayout, name: string): Promise<void> {
  await hangStorageView(layout, name);
}

/** Fault hook: the node's storage view dies (bindfs killed); its pods' shared-storage I/O fails. */
export async function failNodeStorage(layout: ClusterLayout, name: string): Promise<void> {
  await failStorageView(layout, name);
}

/** Ends a storage fault of the node (a hung view resumes; a failed one is mounted again for new pods). */
export async function restoreNodeStorage(layout: ClusterLayout, name: string, storageRoot: string): Promise<void> {
  await restoreStorageView(layout, name, path.resolve(storageRoot));
}

/** Where the node's storage view is mounted (whether or not it has one). */
export function nodeStorageView(layout: ClusterLayout, name: string): string {
  return storageViewMountPoint(layout, name);
}


// Gives a test the shared local cluster: reuses the one `npm start` runs, or
// brings one up (once, under a lock, however many test files ask at the same
// time) and tears it down after the last test process using it has gone.
// Fault tests create their own throwaway nodes; the two default nodes are shared.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { clusterOwner, clusterSteps, setClusterOwner } from '../../hack/cluster/cluster.ts';
import { nodeMonitorGracePeriodSeconds } from '../../hack/cluster/control-plane.ts';
import { apiServerHost, apiServerUrl, clusterLayout, network, ports } from '../../hack/cluster/layout.ts';
import type { ClusterLayout } from '../../hack/cluster/layout.ts';
import { kubectl, kubectlPath } from '../../hack/cluster/kubectl.ts';
import { withClusterLock } from '../../hack/cluster/lock.ts';
import {
  crashNode, cutNodeNetwork, defaultNodeNames, failNodeStorage, freezeNode, hangNodeStorage, nodeCondition, restoreNodeStorage,
  startNode, stopNode, waitNodeReady,
} from '../../hack/cluster/nodes.ts';
import type { NodeOptions, SimulatedNode } from '../../hack/cluster/nodes.ts';
import { addUser, liveUsers, removeUser, scheduleIdleStop } from '../../hack/cluster/users.ts';

/** Throwaway nodes carry this NoSchedule taint (value: the node name). */
export const throwawayTaintKey = 'keyvirt.io/throwaway-node';

export interface TestCluster {
  readonly layout: ClusterLayout;
  /** Admin kubeconfig. */
  readonly kubeconfig: string;
  /** Kubeconfig of `keyvirt-viewer`, bound to the read-only `view` ClusterRole. */
  readonly viewerKubeconfig: string;
  readonly kubectlPath: string;
  /** The API server as pods see it (KUBERNETES_SERVICE_HOST/PORT); also reachable from the host. */
  readonly apiServer: { readonly host: string; readonly port: number; readonly url: string };
  readonly bridge: { readonly name: string; readonly subnet: string; readonly gateway: string };
  /** The shared default nodes (never fault-inject these). */
  readonly defaultNodes: readonly string[];
  readonly nodeMonitorGracePeriodSeconds: number;
  /** Runs the pinned kubectl as admin (or with `kubeconfig`); returns stdout, throws KubectlError. */
  kubectl(args: readonly string[], input?: string, kubeconfig?: string): string;
  /** Creates a throwaway simulated node (name made unique, tainted `throwawayTaintKey`) and waits until it is Ready. */
  createNode(prefix: string, options?: NodeOptions): Promise<SimulatedNode>;
  /** Stops a throwaway node's simulator (its pods die), deletes the Node, frees its network. */
  deleteNode(name: string): Promise<void>;
  readonly faults: NodeFaults;
  /** Releases this process's use of the cluster (registered automatically at exit too). */
  release(): void;
}

export interface NodeFaults {
  /** SIGKILL the node's simulator: its pods die, its heartbeats stop. */
  crash(name: string): Promise<void>;
  /** Restart a crashed node's simulator (pods bound to it are started again). */
  restart(name: string, options?: NodeOptions): Promise<SimulatedNode>;
  /** Freeze the simulator and every pod process (freezer cgroup), or thaw them. */
  freeze(name: string): void;
  thaw(name: string): void;
  /**
   * Take the node's uplink down (node and its pods leave the network: API server, operator,
   * other nodes), or bring it back. Storage is the host's file system and stays reachable.
   */
  cutNetwork(name: string): void;
  restoreNetwork(name: string): void;
  /**
   * Storage loss on one node (only a node created with `storageRoot`): its FUSE view of
   * the shared storage stops answering — every I/O of its pods there waits (hang) — or
   * dies — every I/O fails (fail). `storageRestore` resumes a hung view, or mounts a
   * failed one afresh for new pods. Other nodes and the host are never affected.
   */
  storageHang(name: string): Promise<void>;
  storageFail(name: string): Promise<void>;
  storageRestore(name: string): Promise<void>;
  /** The Ready condition status the API server shows for a node. */
  readyStatus(name: string): string | undefined;
}

function testLogger(): Logger {
  return pino({ level: process.env.KEYVIRT_LOG_LEVEL ?? 'warn', base: { pid: process.pid, suite: 'cluster-support' } });
}

function assertDefaultUntouched(name: string): void {
  if (defaultNodeNames.includes(name)) throw new RangeError(`refusing to inject a fault into shared node ${name}; create a throwaway node`);
}

async function bringUp(layout: ClusterLayout, log: Logger): Promise<void> {
  if (clusterOwner(layout) === undefined) setClusterOwner(layout, 'tests');
  for (const step of clusterSteps) await step.run(layout, log);
}

let cached: Promise<TestCluster> | undefined;

/** The shared cluster, ready (control plane, two Ready nodes, CRDs Established). */
export function ensureCluster(): Promise<TestCluster> {
  cached ??= connect();
  return cached;
}

async function connect(): Promise<TestCluster> {
  const layout = clusterLayout();
  const log = testLogger();
  await withClusterLock(layout, async () => {
    addUser(layout);
    await bringUp(layout, log);
  });
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    removeUser(layout);
    if (clusterOwner(layout) === 'tests' && liveUsers(layout).length === 0) scheduleIdleStop(layout, 30_000);
  };
  process.once('exit', release);
  const storageRoots = new Map<string, string>();
  const storageRootOf = (name: string): string => {
    const root = storageRoots.get(name);
    if (root === undefined) throw new RangeError(`node ${name} was not created with a storageRoot`);
    return root;
  };
  const deleteNode = async (name: string): Promise<void> => {
    assertDefaultUntouched(name);
    try {
      freezeNode(name, false);
    } catch {
      // never frozen
    }
    await stopNode(layout, name, log, { deleteObject: true });
    storageRoots.delete(name);
  };
  return {
    layout,
    kubeconfig: layout.kubeconfig,
    viewerKubeconfig: layout.viewerKubeconfig,
    kubectlPath: kubectlPath(layout),
    apiServer: { host: apiServerHost, port: ports.apiServer, url: apiServerUrl },
    bridge: { name: network.bridge, subnet: network.subnet, gateway: network.gateway },
    defaultNodes: defaultNodeNames,
    nodeMonitorGracePeriodSeconds,
    kubectl: (args, input, kubeconfig) => kubectl(layout, args, input, kubeconfig),
    createNode: async (prefix, options) => {
      const name = `${prefix}-${randomBytes(3).toString('hex')}`;
      // Tainted so that nothing but pods bound to it by name (or tolerating it) lands there.
      const taints = [`${throwawayTaintKey}=${name}:NoSchedule`, ...(options?.taints ?? [])];
      if (options?.storageRoot !== undefined) storageRoots.set(name, options.storageRoot);
      return startNode(layout, name, log, { ...options, taints });
    },
    deleteNode,
    faults: {
      crash: async (name) => {
        assertDefaultUntouched(name);
        await crashNode(layout, name);
      },
      restart: async (name, options) => {
        assertDefaultUntouched(name);
        const root = storageRoots.get(name);
        const node = await startNode(layout, name, log, { ...(root === undefined ? {} : { storageRoot: root }), ...options });
        await waitNodeReady(layout, name, 60_000);
        return node;
      },
      freeze: (name) => { assertDefaultUntouched(name); freezeNode(name, true); },
      thaw: (name) => { freezeNode(name, false); },
      cutNetwork: (name) => { assertDefaultUntouched(name); cutNodeNetwork(layout, name, true); },
      restoreNetwork: (name) => { cutNodeNetwork(layout, name, false); },
      storageHang: async (name) => { assertDefaultUntouched(name); storageRootOf(name); await hangNodeStorage(layout, name); },
      storageFail: async (name) => { assertDefaultUntouched(name); storageRootOf(name); await failNodeStorage(layout, name); },
      storageRestore: async (name) => { await restoreNodeStorage(layout, name, storageRootOf(name)); },
      readyStatus: (name) => nodeCondition(layout, name, 'Ready'),
    },
    release,
  };
}

export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, intervalMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(intervalMs);
  }
  throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ''}`);
}

// Where the local cluster keeps its state and which addresses it uses.
// Everything lives under `.keyvirt/` at the repository root (git-ignored); the
// binaries come from hack/.cache/k8s/bin (built by hack/k8s/build.sh).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ClusterLayout {
  readonly root: string;
  readonly stateDir: string;
  readonly logDir: string;
  readonly runDir: string;
  readonly pkiDir: string;
  readonly etcdDataDir: string;
  readonly nodesDir: string;
  readonly binDir: string;
  readonly kubeconfig: string;
  readonly viewerKubeconfig: string;
}

export function clusterLayout(root: string = repoRoot): ClusterLayout {
  const stateDir = path.join(root, '.keyvirt');
  return {
    root,
    stateDir,
    logDir: path.join(stateDir, 'logs'),
    runDir: path.join(stateDir, 'run'),
    pkiDir: path.join(stateDir, 'pki'),
    etcdDataDir: path.join(stateDir, 'etcd'),
    nodesDir: path.join(stateDir, 'nodes'),
    binDir: process.env.KEYVIRT_K8S_BIN ?? path.join(root, 'hack/.cache/k8s/bin'),
    kubeconfig: path.join(stateDir, 'kubeconfig'),
    viewerKubeconfig: path.join(stateDir, 'kubeconfig-viewer'),
  };
}

/**
 * The node network: one Linux bridge in the host namespace holding the gateway
 * address; every node and pod namespace hangs off it. The /24 is split into /28
 * slices: slice 0 is the gateway's, slice k (1..15) belongs to node index k, whose
 * first address is the node's own and the rest its pods'.
 */
export const network = {
  bridge: 'kv-br0',
  subnet: '10.77.0.0/24',
  prefixLength: 24,
  gateway: '10.77.0.1',
  sliceSize: 16,
  maxNodeIndex: 15,
} as const;

export const ports = {
  etcdClient: 23790,
  etcdPeer: 23800,
  apiServer: 6443,
  controllerManager: 10257,
  scheduler: 10259,
} as const;

/** The API server's address as pods and nodes see it (never a ClusterIP). */
export const apiServerHost: string = network.gateway;
export const apiServerUrl = `https://${apiServerHost}:${ports.apiServer}`;
export const serviceClusterIpRange = '10.96.0.0/16';
export const firstServiceIp = '10.96.0.1';

function sliceAddress(index: number, offset: number): string {
  return `10.77.0.${index * network.sliceSize + offset}`;
}

export interface NodeSlice {
  readonly index: number;
  readonly nodeIp: string;
  readonly podCidr: string;
  /** Addresses pods may take, in order. */
  readonly podIps: readonly string[];
}

export function nodeSlice(index: number): NodeSlice {
  if (!Number.isInteger(index) || index < 1 || index > network.maxNodeIndex) {
    throw new RangeError(`node index ${index} outside 1..${network.maxNodeIndex}`);
  }
  const podIps: string[] = [];
  for (let offset = 2; offset < network.sliceSize - 1; offset++) podIps.push(sliceAddress(index, offset));
  return {
    index,
    nodeIp: sliceAddress(index, 1),
    podCidr: `${sliceAddress(index, 0)}/28`,
    podIps,
  };
}

/** Names of the kernel objects a node owns (interface names stay within 15 bytes). */
export function nodeNetNames(index: number): { netns: string; uplinkHost: string } {
  return { netns: `kv-node-${index}`, uplinkHost: `kvn${index}` };
}

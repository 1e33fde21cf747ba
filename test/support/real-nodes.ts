// Real kubelet + containerd nodes for the suites that need them (opt-in: every other suite
// runs on the simulated nodes). `ensureRealNodes` brings the shared cluster up, then the
// real nodes (once, under the cluster lock); they go away with the cluster.
import { pino } from 'pino';
import type { Logger } from 'pino';
import { withClusterLock } from '../../hack/cluster/lock.ts';
import { realNodeLabel, realNodeNames, realNodeTaint } from '../../hack/cluster/real-node-config.ts';
import { busyboxImage } from '../../hack/cluster/real-node-images.ts';
import type { ImageArchive } from '../../hack/cluster/real-node-images.ts';
import { realNodeDevicePluginDir, startRealNode } from '../../hack/cluster/real-nodes.ts';
import type { RealNode } from '../../hack/cluster/real-nodes.ts';
import { ensureCluster } from './cluster.ts';
import type { TestCluster } from './cluster.ts';

export type { ImageArchive, RealNode };
export { busyboxImage, realNodeDevicePluginDir, realNodeLabel, realNodeTaint };

/** A pod toleration for the real nodes' taint. */
export const realNodeToleration = { key: realNodeTaint.key, operator: 'Equal', value: realNodeTaint.value, effect: realNodeTaint.effect } as const;

export interface RealNodes {
  readonly cluster: TestCluster;
  /** The running real nodes, Ready, in the order of `realNodeNames`. */
  readonly nodes: readonly RealNode[];
  /** Imports an image into every real node's containerd (only where that archive is new). */
  importImage(image: ImageArchive): Promise<void>;
}

function logger(): Logger {
  return pino({ level: process.env.KEYVIRT_LOG_LEVEL ?? 'warn', base: { pid: process.pid, suite: 'real-nodes-support' } });
}

let cached: Promise<RealNodes> | undefined;

/** The shared cluster with its real nodes running and Ready; `images` imported into each. */
export function ensureRealNodes(images: readonly ImageArchive[] = []): Promise<RealNodes> {
  cached ??= connect();
  return cached.then(async (real) => {
    for (const image of images) await real.importImage(image);
    return real;
  });
}

async function connect(): Promise<RealNodes> {
  const cluster = await ensureCluster();
  const log = logger();
  const start = (images: readonly ImageArchive[]): Promise<RealNode[]> => withClusterLock(cluster.layout, async () => {
    const nodes: RealNode[] = [];
    for (const name of realNodeNames) nodes.push(await startRealNode(cluster.layout, name, log, images));
    return nodes;
  });
  const nodes = await start([]);
  return {
    cluster,
    nodes,
    importImage: async (image) => { await start([image]); },
  };
}

// The whole local cluster as start/stop steps: binaries, control plane, nodes, CRDs.
// `npm start` runs `clusterSteps` (and whatever steps are appended after them);
// the test support module calls `ensureClusterUp` under a lock.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { controlPlaneDown, controlPlaneRunning, controlPlaneUp } from './control-plane.ts';
import type { ClusterLayout } from './layout.ts';
import { kubectl } from './kubectl.ts';
import { kubeProxyDown, kubeProxyUp } from './kube-proxy.ts';
import { defaultNodeNames, startNode, stopAllNodes } from './nodes.ts';
import { stopAllRealNodes } from './real-nodes.ts';

export interface StartStep {
  readonly name: string;
  readonly run: (layout: ClusterLayout, log: Logger) => Promise<void>;
}

/** Builds the pinned control-plane binaries when a pin changed or they are missing (cached otherwise). */
export function buildBinaries(layout: ClusterLayout, target: 'control-plane' | 'tools' | 'all' = 'control-plane'): void {
  execFileSync('bash', [path.join(layout.root, 'hack/k8s/build.sh'), target], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, KEYVIRT_K8S_BIN: layout.binDir },
  });
}

/** The CRD manifests of KeyVirt (whatever exists under crds/manifests). */
export function crdManifests(layout: ClusterLayout): string[] {
  const dir = path.join(layout.root, 'crds/manifests');
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort().map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** Applies the CRDs server-side and waits until each is Established. */
export function applyCrds(layout: ClusterLayout, log: Logger): string[] {
  const names: string[] = [];
  for (const file of crdManifests(layout)) {
    const out = kubectl(layout, ['apply', '--server-side', '--force-conflicts', '--field-manager=keyvirt-local-cluster', '-f', file, '-o', 'name']);
    names.push(...out.split('\n').filter((l) => l.startsWith('customresourcedefinition')));
  }
  if (names.length > 0) {
    kubectl(layout, ['wait', '--for=condition=Established', '--timeout=120s', ...names]);
  }
  log.info({ crds: names.length }, 'CRDs established');
  return names;
}

export const clusterSteps: readonly StartStep[] = [
  { name: 'build the pinned Kubernetes binaries', run: (layout) => Promise.resolve(buildBinaries(layout)) },
  { name: 'start the control plane', run: controlPlaneUp },
  { name: 'route the Service CIDR onto the bridge and start kube-proxy', run: kubeProxyUp },
  {
    name: 'start the simulated nodes',
    run: async (layout: ClusterLayout, log: Logger): Promise<void> => {
      // One after the other: `ip netns add` races when two create the first namespaces at once.
      for (const name of defaultNodeNames) await startNode(layout, name, log);
    },
  },
  { name: 'apply the KeyVirt CRDs', run: (layout, log) => Promise.resolve(void applyCrds(layout, log)) },
];

/** Who started the running cluster: `npm start` keeps it; tests may stop what they started. */
export type ClusterOwner = 'start' | 'tests';

function ownerFile(layout: ClusterLayout): string {
  return path.join(layout.runDir, 'owner');
}

export function clusterOwner(layout: ClusterLayout): ClusterOwner | undefined {
  try {
    const text = fs.readFileSync(ownerFile(layout), 'utf8').trim();
    return text === 'start' || text === 'tests' ? text : undefined;
  } catch {
    return undefined;
  }
}

export function setClusterOwner(layout: ClusterLayout, owner: ClusterOwner): void {
  fs.mkdirSync(layout.runDir, { recursive: true });
  fs.writeFileSync(ownerFile(layout), `${owner}\n`);
}

export function clusterRunning(layout: ClusterLayout): boolean {
  return controlPlaneRunning(layout);
}

/** Tears everything down: nodes, control plane, bridge, cgroups, cluster data. */
export async function clusterDown(layout: ClusterLayout, log: Logger): Promise<void> {
  // Real nodes first: they hold node slots that stopAllNodes would otherwise take for simulated ones.
  await stopAllRealNodes(layout, log);
  await stopAllNodes(layout, log);
  await kubeProxyDown(layout, log);
  await controlPlaneDown(layout, log, { wipe: true });
  fs.rmSync(layout.nodesDir, { recursive: true, force: true });
  fs.rmSync(ownerFile(layout), { force: true });
  for (const controller of ['memory', 'cpu', 'freezer']) {
    try {
      fs.rmdirSync(path.join('/sys/fs/cgroup', controller, 'keyvirt'));
    } catch {
      // absent or still in use by a process that is exiting
    }
  }
}

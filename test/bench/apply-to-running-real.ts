// The real-node part of `npm run bench -- apply-to-running`: the same VM as the
// simulated part, applied with its launcher pod pinned to a real kubelet + containerd
// node (the images hack/images builds, imported into each node's containerd), timed
// from `kubectl apply` to the VM's AgentConnected condition True. The operator is a
// chart release of its own on the real nodes (test/chart/helm-install-release.ts: its
// admission policy admits exactly the launcher image it runs), managing only this
// part's VMs. TCG here.
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestCluster } from '../support/cluster.ts';
import type { TestGuest } from '../support/guest.ts';
import { ensureRealNodes, realNodeLabel, realNodeToleration } from '../support/real-nodes.ts';
import { keyvirtImages } from '../real-nodes/keyvirt-images.ts';
import { chartDir, helm, helmOk, releaseValues, writeValues } from '../chart/helm-install-release.ts';
import { apply, condition, getVm, TEST_RUN_LABEL, testVm, type Scratch } from '../operator/vm-fixtures.ts';

const TIMEOUT_MS = 300_000;

export interface RealNodeRun {
  readonly ms: number;
  readonly node: string;
  readonly accel: string;
}

export interface RealNodeBench {
  run(name: string): Promise<RealNodeRun>;
  dispose(): Promise<void>;
}

/** Brings the real nodes up with the KeyVirt images and starts this part's operator. */
export async function startRealNodeBench(cluster: TestCluster, s: Scratch, guest: TestGuest): Promise<RealNodeBench> {
  const images = keyvirtImages();
  const real = await ensureRealNodes(images.archives);
  const runLabel = `${s.runId}-real`;
  const release = `kv-bench-${s.runId}`;
  const releaseNs = `kv-bench-sys-${s.runId}`;
  const values = releaseValues({
    release, namespace: releaseNs, runId: runLabel, vmNamespaces: [s.namespace], apiServer: cluster.apiServer,
    hostPathPattern: `^${s.dir}/`,
    images: images.values,
    placement: { nodeSelector: { [realNodeLabel]: 'true' }, tolerations: [realNodeToleration] },
  });
  helmOk(cluster, ['install', release, chartDir, '-n', releaseNs, '--create-namespace', '-f', writeValues(s.dir, values, 'values-real.json'), '--wait', '--timeout', '10m']);
  const nodes = real.nodes.map((n) => n.name);
  return {
    run: async (name) => {
      const base = testVm(s, guest, { name });
      const started = Date.now();
      apply(cluster, {
        ...base,
        metadata: { ...base.metadata, labels: { [TEST_RUN_LABEL]: runLabel } },
        spec: { ...base.spec, nodeSelector: { [realNodeLabel]: 'true' }, tolerations: [realNodeToleration] },
      });
      try {
        while (Date.now() - started < TIMEOUT_MS) {
          const vm = getVm(cluster, s.namespace, name);
          if (vm !== undefined && condition(vm, 'AgentConnected')?.status === 'True') {
            const ms = Date.now() - started;
            const node = vm.status?.nodeName ?? '';
            if (!nodes.includes(node)) throw new Error(`VM ${name} ran on ${node}, not on a real node`);
            return { ms, node, accel: vm.status?.accelerator ?? 'unknown' };
          }
          await sleep(100);
        }
        throw new Error(`VM ${name} on a real node: AgentConnected never became True (kubectl logs -n ${releaseNs} deploy/keyvirt-operator)`);
      } finally {
        cluster.kubectl(['delete', 'vm', name, '-n', s.namespace, '--wait=true', '--timeout=180s']);
      }
    },
    dispose: () => {
      helm(cluster, ['uninstall', release, '-n', releaseNs, '--wait', '--timeout', '3m']);
      cluster.kubectl(['delete', 'namespace', releaseNs, '--wait=false', '--ignore-not-found']);
      return Promise.resolve();
    },
  };
}

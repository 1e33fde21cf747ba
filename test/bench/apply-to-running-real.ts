// The real-node part of `npm run bench -- apply-to-running`: the same VM as the
// simulated part, applied with its launcher pod pinned to a real kubelet + containerd
// node (the launcher image hack/images builds, imported into each node's containerd),
// timed from `kubectl apply` to the VM's AgentConnected condition True. Its own
// operator (from source on the host, like the simulated part's) is told that launcher
// image and manages only this part's VMs. TCG here.
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestCluster } from '../support/cluster.ts';
import type { TestGuest } from '../support/guest.ts';
import { ensureRealNodes, realNodeLabel, realNodeToleration } from '../support/real-nodes.ts';
import { keyvirtImages } from '../real-nodes/keyvirt-images.ts';
import { operatorKubeconfig, startOperator, stopOperator } from '../operator/operator-process.ts';
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
  const launcher = images.values.launcher;
  const runLabel = `${s.runId}-real`;
  const operator = startOperator({
    kubeconfig: await operatorKubeconfig(cluster, path.join(s.dir, 'operator-real.kubeconfig')),
    logFile: path.join(s.dir, 'operator-real.log'),
    identity: `bench-real-${s.runId}`,
    leaseName: `keyvirt-e2e-${runLabel}`,
    vmSelector: `${TEST_RUN_LABEL}=${runLabel}`,
    extraArgs: ['--launcher-image', `${launcher.repository}:${launcher.tag}`, '--launcher-pull-policy', 'Never'],
  });
  await operator.healthPort;
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
        throw new Error(`VM ${name} on a real node: AgentConnected never became True (operator log ${path.join(s.dir, 'operator-real.log')})`);
      } finally {
        cluster.kubectl(['delete', 'vm', name, '-n', s.namespace, '--wait=true', '--timeout=180s']);
      }
    },
    dispose: async () => {
      await stopOperator(operator);
      cluster.kubectl(['delete', 'lease', `keyvirt-e2e-${runLabel}`, '-n', 'keyvirt-system', '--ignore-not-found']);
    },
  };
}

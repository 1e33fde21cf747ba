// The real-node part of `npm run bench -- apply-to-running`: the same VM as the
// simulated part, applied with its launcher pod pinned to a real kubelet + containerd
// node (the images hack/images builds, imported into each node's containerd), timed
// from `kubectl apply` to the VM's AgentConnected condition True. The operator is a
// chart release of its own on the real nodes (test/chart/helm-install-release.ts: its
// admission policy admits exactly the launcher image it runs), managing only this
// part's VMs. TCG here.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { realNodesCgroupParent } from '../../hack/cluster/real-node-config.ts';
import { processMemory } from '../support/process-memory.ts';
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
  readonly memory: RealPodMemory;
}

/** The launcher container's memory cgroup on the real node (the kubelet's, cgroupfs), at AgentConnected. */
export interface RealPodMemory {
  /** memory.usage_in_bytes: what the container is charged (the launcher, QEMU, page cache they faulted first). */
  readonly chargedMiB: number;
  /** The charge beside QEMU's own anonymous memory: what the launcher costs the node. */
  readonly besideQemuMiB: number;
  readonly launcherRssMiB: number;
  readonly launcherAnonMiB: number;
  readonly qemuAnonMiB: number;
}

const MIB = 2 ** 20;

/** The cgroup directories below `dir`, depth first. */
async function* cgroupDirs(dir: string): AsyncGenerator<string> {
  yield dir;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) yield* cgroupDirs(path.join(dir, entry.name));
  }
}

async function realPodMemory(node: string, podUid: string): Promise<RealPodMemory> {
  const root = path.join('/sys/fs/cgroup/memory', realNodesCgroupParent, node);
  for await (const dir of cgroupDirs(root)) {
    // The kubelet's cgroupfs layout: kubepods/<qos>/pod<uid>/<container id>.
    if (path.basename(path.dirname(dir)) !== `pod${podUid}`) continue;
    const pids = (await readFile(path.join(dir, 'cgroup.procs'), 'utf8')).split('\n').filter((l) => l !== '').map(Number);
    let qemu: { anon: number } | undefined;
    let launcher: { rss: number; anon: number } | undefined;
    for (const pid of pids) {
      const exe = await readFile(`/proc/${pid}/cmdline`, 'utf8').then((c) => c.split('\0')[0] ?? '', () => '');
      const m = await processMemory(pid).catch(() => undefined);
      if (m === undefined) continue;
      if (exe.includes('qemu-system')) qemu = { anon: m.anonMiB };
      if (exe.endsWith('/node')) launcher = { rss: m.rssMiB, anon: m.anonMiB };
    }
    if (qemu === undefined || launcher === undefined) continue;
    const charged = Number(await readFile(path.join(dir, 'memory.usage_in_bytes'), 'utf8')) / MIB;
    return { chargedMiB: charged, besideQemuMiB: charged - qemu.anon, launcherRssMiB: launcher.rss, launcherAnonMiB: launcher.anon, qemuAnonMiB: qemu.anon };
  }
  throw new Error(`no memory cgroup under ${root} for pod ${podUid} holds its launcher and QEMU`);
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
            const uid = cluster.kubectl(['get', 'pods', '-n', s.namespace, '-l', `keyvirt.io/vm=${name}`, '-o', 'jsonpath={.items[0].metadata.uid}']).trim();
            return { ms, node, accel: vm.status?.accelerator ?? 'unknown', memory: await realPodMemory(node, uid) };
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

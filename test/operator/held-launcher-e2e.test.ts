// End to end on the local cluster: a VM whose launcher the node agent runs (ADR 0134).
// A throwaway simulated node runs the chart's node agent (held launchers on, privileged,
// in a pod pinned to the node) beside the launcher pods; the real operator runs with
// --launcher-host node-agent. The launcher pod holds QEMU under the launcher image's pod
// script, as the operator renders it (no capabilities, read-only root); the agent reads
// the pod's configuration through its root, starts QEMU through the script, and serves
// the launcher API in the pod's network namespace. Real QEMU (TCG here) boots the test
// guest from its disk, with its guest agent; then the VM is stopped through the operator.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import type { VirtualMachine } from '@keyvirt/crds';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { cgroupNamesPod } from '../../operator/src/node-agent/network/pod-netns.ts';
import { memoryOverheadBytes } from '../../operator/src/vm/launcher-resources.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { startChartNodeAgent } from '../network/chart-node-agent.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, condition, launcherPods, scratch, type Scratch, testVm, waitVm } from './vm-fixtures.ts';

const VM = 'held-1';
const BOOT_TIMEOUT_MS = 600_000;
const POD_SCRIPT = '/opt/keyvirt/launcher/pod/vm-pod.sh';

interface PodProcess {
  pid: number;
  argv: string[];
  rssKiB: number;
  pssKiB: number;
  privateKiB: number;
}

function kib(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** The processes of the pod's containers (in a PID namespace of their own), as the node sees them. */
async function podProcesses(podUid: string): Promise<PodProcess[]> {
  const out: PodProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = path.join('/proc', entry);
    const [cgroup, status, cmdline, rollup] = await Promise.all(
      ['cgroup', 'status', 'cmdline', 'smaps_rollup'].map((f) => readFile(path.join(dir, f), 'utf8').catch(() => '')),
    );
    if (cgroup === undefined || !cgroupNamesPod(cgroup, podUid)) continue;
    const nspid = /^NSpid:\s+(.*)$/m.exec(status ?? '')?.[1]?.trim().split(/\s+/) ?? [];
    if (nspid.length < 2) continue; // the simulator's own wrapper, outside the pod's PID namespace
    out.push({
      pid: Number(entry),
      argv: (cmdline ?? '').split('\0').filter((a) => a !== ''),
      rssKiB: kib(status ?? '', 'VmRSS'),
      pssKiB: kib(rollup ?? '', 'Pss'),
      privateKiB: kib(rollup ?? '', 'Private_Clean') + kib(rollup ?? '', 'Private_Dirty'),
    });
  }
  return out;
}

const PodSpec = z.object({
  metadata: z.object({ uid: z.string(), labels: z.record(z.string(), z.string()).default({}), annotations: z.record(z.string(), z.string()).default({}) }),
  spec: z.object({ containers: z.array(z.object({ command: z.array(z.string()).optional(), resources: z.object({ requests: z.record(z.string(), z.string()).optional() }).loose() }).loose()) }),
});

void describe('a VM whose launcher the node agent runs (local cluster, real QEMU)', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let node: SimulatedNode | undefined;
  let operator: OperatorProcess | undefined;
  const clusterScoped: string[][] = [];

  const pinned = (name: string): ReturnType<typeof testVm> => {
    const vm = testVm(s, guest, { name });
    vm.spec.nodeSelector = { 'kubernetes.io/hostname': node?.name ?? '' };
    vm.spec.tolerations = [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }];
    return vm;
  };
  const pod = (name: string): z.infer<typeof PodSpec> => {
    const [found] = launcherPods(cluster, s.namespace, name);
    assert.ok(found !== undefined, `${name} has a launcher pod`);
    return PodSpec.parse(JSON.parse(cluster.kubectl(['get', 'pod', found.metadata.name, '-n', s.namespace, '-o', 'json'])));
  };

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-held');
    node = await cluster.createNode('kvt-held');
    clusterScoped.push(...startChartNodeAgent(cluster, `held-${s.runId}`, s.namespace, node.name, ['launcher.host=node-agent', 'nodeAgent.podNetwork.enabled=false']));
    operator = await startSuiteOperator(cluster, s, 'held-launcher', ['--launcher-host', 'node-agent']);
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await s.cleanup();
    if (node !== undefined) await cluster.deleteNode(node.name);
  });

  let held: z.infer<typeof PodSpec>;

  void it('runs: the pod holds QEMU under its script, the agent runs the launcher; the guest boots with its agent', async (t) => {
    apply(cluster, pinned(VM));
    const started = Date.now();
    const vm: VirtualMachine = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with its guest agent',
      (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined && condition(v, 'AgentConnected')?.status === 'True', BOOT_TIMEOUT_MS);
    t.diagnostic(`Running with the guest agent connected after ${Date.now() - started} ms (accel=${vm.status?.accelerator ?? '?'})`);
    assert.equal(vm.status?.accelerator, 'tcg', 'the simulated nodes have no hardware KVM: QEMU runs under TCG');
    assert.equal(vm.status?.guestOSInfo?.id, 'debian');
    assert.equal(condition(vm, 'LiveMigratable')?.reason, 'LauncherNotLiveMigratable');
    held = pod(VM);
    assert.equal(held.metadata.labels['keyvirt.io/launcher-host'], 'node-agent');
    assert.deepEqual(held.spec.containers[0]?.command, ['/bin/bash', POD_SCRIPT]);
    const processes = await podProcesses(held.metadata.uid);
    const qemu = processes.filter((p) => path.basename(p.argv[0] ?? '').startsWith('qemu-system'));
    const beside = processes.filter((p) => !qemu.includes(p));
    assert.equal(qemu.length, 1, `one QEMU in the pod: ${JSON.stringify(processes.map((p) => p.argv.slice(0, 2)))}`);
    assert.ok(beside.length > 0 && beside.every((p) => path.basename(p.argv[0] ?? '') === 'bash'), `only the pod script beside QEMU: ${JSON.stringify(beside.map((p) => p.argv))}`);
    const sum = (f: (p: PodProcess) => number): string => (beside.reduce((a, p) => a + f(p), 0) / 1024).toFixed(1);
    t.diagnostic(`beside QEMU in the pod: ${beside.length} bash processes, ${sum((p) => p.rssKiB)} MiB resident, ${sum((p) => p.privateKiB)} MiB private, ${sum((p) => p.pssKiB)} MiB PSS; QEMU ${(qemu[0]?.rssKiB ?? 0) / 1024 | 0} MiB resident (accel=tcg)`);
    // The pod's request states what it holds: the script's allowance in place of a launcher's.
    const overhead = Number(held.metadata.annotations['keyvirt.io/memory-overhead-bytes'] ?? '0');
    assert.equal(overhead, memoryOverheadBytes(vm.spec.template, true, true));
    assert.ok(overhead < memoryOverheadBytes(vm.spec.template, true, false));
  });

  void it('stops through the operator: the agent shuts the guest down and the pod exits', async () => {
    cluster.kubectl(['annotate', 'vm', VM, '-n', s.namespace, 'keyvirt.io/request=stop']);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Stopped', (v) => v.status?.phase === 'Stopped', 180_000);
    await eventually('launcher pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 60_000);
    assert.deepEqual(await podProcesses(held.metadata.uid), [], 'nothing of the pod runs on the node');
  });
});

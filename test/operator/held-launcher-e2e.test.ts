// End to end on the local cluster: a VM whose launcher the node agent runs (ADR 0134).
// A throwaway simulated node runs the chart's node agent (held launchers on, privileged,
// in a pod pinned to the node) beside the launcher pods; the real operator runs with
// --launcher-host node-agent. The launcher pod holds QEMU under the launcher image's pod
// script, as the operator renders it (no capabilities, read-only root); the agent reads
// the pod's configuration through its root, starts QEMU through the script, and serves
// the launcher API in the pod's network namespace. Real QEMU (TCG here) boots the test
// guest from its disk, with its guest agent, for two VMs at once on the node (the agent's
// growth per VM is reported). One VM's API port then takes hostile traffic (generated
// malformed requests, slow clients): the agent, which serves both VMs in one process,
// goes on, and the other VM's API answers throughout. The agent is then killed: the one
// that replaces it adopts both QEMUs (ADR 0135). Then both VMs are stopped through the
// operator; neither agent logged an error nobody caught (ADR 0139).
import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import type { VirtualMachine } from '@keyvirt/crds';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { memoryOverheadBytes } from '../../operator/src/vm/launcher-resources.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { startChartNodeAgent } from '../network/chart-node-agent.ts';
import { ADOPTING, agentLogLines, agentPids, agentRssKiB, podProcesses, type PodProcess } from './held-fixtures.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, condition, launcherPods, scratch, type Scratch, testVm, waitVm } from './vm-fixtures.ts';
import { vmToken } from './migration-observer.ts';
import { Random } from '../launcher/http-fuzz.ts';
import { fuzzApi, slowClients, type FuzzRun } from '../launcher/http-fuzz-run.ts';
import { LauncherClient, LAUNCHER_API_PORT } from '@keyvirt/launcher/api';

const VMS = ['held-1', 'held-2'] as const;
const BOOT_TIMEOUT_MS = 600_000;
const POD_SCRIPT = '/opt/keyvirt/launcher/pod/vm-pod.sh';
/** Generated malformed requests at one held VM's API (test/launcher/fuzz-api.test.ts has the in-pod launcher's). */
const HOSTILE_REQUESTS = 1500;

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

  const held = new Map<string, z.infer<typeof PodSpec>>();

  const agentUid = (): string => z.object({ metadata: z.object({ uid: z.string() }) })
    .parse(JSON.parse(cluster.kubectl(['get', 'pod', `node-agent-${node?.name ?? ''}`, '-n', s.namespace, '-o', 'json']))).metadata.uid;
  const runningWithAgent = (name: string): Promise<VirtualMachine> => waitVm(cluster, { namespace: s.namespace, name }, 'Running with its guest agent',
    (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined && condition(v, 'AgentConnected')?.status === 'True', BOOT_TIMEOUT_MS);

  void it('runs two VMs: each pod holds QEMU under its script, the agent runs their launchers; the guests boot with their agents', async (t) => {
    const agent = agentUid();
    await eventually('the node agent running', async () => ((await agentRssKiB(agent)) > 0 ? true : undefined), 120_000);
    await sleep(5000); // past its start-up
    const idleKiB = await agentRssKiB(agent);
    const agentKiB = [idleKiB];
    for (const name of VMS) {
      apply(cluster, pinned(name));
      const started = Date.now();
      const vm = await runningWithAgent(name);
      agentKiB.push(await agentRssKiB(agent));
      t.diagnostic(`${name}: Running with the guest agent connected after ${Date.now() - started} ms (accel=${vm.status?.accelerator ?? '?'})`);
      assert.equal(vm.status?.accelerator, 'tcg', 'the simulated nodes have no hardware KVM: QEMU runs under TCG');
      assert.equal(vm.status?.guestOSInfo?.id, 'debian');
      assert.notEqual(condition(vm, 'LiveMigratable')?.reason, 'LauncherNotLiveMigratable', 'a held VM may migrate (ADR 0137)');
      const p = pod(name);
      held.set(name, p);
      assert.equal(p.metadata.labels['keyvirt.io/launcher-host'], 'node-agent');
      assert.deepEqual(p.spec.containers[0]?.command, ['/bin/bash', POD_SCRIPT]);
      const processes = await podProcesses(p.metadata.uid);
      const qemu = processes.filter((q) => path.basename(q.argv[0] ?? '').startsWith('qemu-system'));
      const beside = processes.filter((q) => !qemu.includes(q));
      assert.equal(qemu.length, 1, `one QEMU in the pod: ${JSON.stringify(processes.map((q) => q.argv.slice(0, 2)))}`);
      assert.ok(beside.length > 0 && beside.every((q) => path.basename(q.argv[0] ?? '') === 'bash'), `only the pod script beside QEMU: ${JSON.stringify(beside.map((q) => q.argv))}`);
      const sum = (f: (q: PodProcess) => number): string => (beside.reduce((a, q) => a + f(q), 0) / 1024).toFixed(1);
      t.diagnostic(`${name}: beside QEMU in the pod: ${beside.length} bash processes, ${sum((q) => q.rssKiB)} MiB resident, ${sum((q) => q.privateKiB)} MiB private, ${sum((q) => q.pssKiB)} MiB PSS; QEMU ${(qemu[0]?.rssKiB ?? 0) / 1024 | 0} MiB resident (accel=tcg)`);
      // The pod's request states what it holds: the script's allowance in place of a launcher's.
      const overhead = Number(p.metadata.annotations['keyvirt.io/memory-overhead-bytes'] ?? '0');
      assert.equal(overhead, memoryOverheadBytes(vm.spec.template, true, true));
      assert.ok(overhead < memoryOverheadBytes(vm.spec.template, true, false));
    }
    const mib = (k: number): string => (k / 1024).toFixed(1);
    t.diagnostic(`node agent resident: ${agentKiB.map(mib).join(' → ')} MiB with 0, 1, 2 VMs (first VM +${mib((agentKiB[1] ?? 0) - idleKiB)}, second +${mib((agentKiB[2] ?? 0) - (agentKiB[1] ?? 0))} MiB)`);
  });

  const qemuPids = async (name: string): Promise<number[]> =>
    (await podProcesses(held.get(name)?.metadata.uid ?? '')).filter((q) => path.basename(q.argv[0] ?? '').startsWith('qemu-system')).map((q) => q.pid);

  void it("hostile traffic on one VM's API port: the agent, both QEMUs and the other VM's API are untouched", async (t) => {
    const [victim, other] = VMS;
    const podIp = (name: string): string => z.object({ status: z.object({ podIP: z.string() }) })
      .parse(JSON.parse(cluster.kubectl(['get', 'pod', launcherPods(cluster, s.namespace, name)[0]?.metadata.name ?? '', '-n', s.namespace, '-o', 'json']))).status.podIP;
    const client = (name: string): LauncherClient => new LauncherClient({ baseUrl: `http://${podIp(name)}:${LAUNCHER_API_PORT}`, token: vmToken(cluster, s.namespace, name) });
    const agentBefore = await agentPids(agentUid());
    const qemuBefore = await Promise.all(VMS.map((n) => qemuPids(n)));
    // The other tenant's API, every 250 ms while the attack runs.
    const otherClient = client(other);
    const watch = { stop: false, ok: 0, failed: [] as string[] };
    const watching = (async () => {
      while (!watch.stop) {
        await otherClient.status().then((st) => (st.phase === 'Running' ? watch.ok++ : watch.failed.push(`phase ${st.phase}`)), (err: unknown) => watch.failed.push(String(err)));
        await sleep(250);
      }
    })();
    const host = podIp(victim);
    const token = vmToken(cluster, s.namespace, victim);
    const seed = Number(process.env.KEYVIRT_FUZZ_SEED ?? Date.now() % 2 ** 31);
    t.diagnostic(`KEYVIRT_FUZZ_SEED=${seed}`);
    const random = new Random(seed);
    const slow = await slowClients(host, LAUNCHER_API_PORT, 8);
    let run: FuzzRun;
    try {
      run = await fuzzApi({ host, port: LAUNCHER_API_PORT, token, random, requests: HOSTILE_REQUESTS, concurrency: 8 });
    } finally {
      slow.stop();
      watch.stop = true;
      await watching;
    }
    const { statuses, unexpected } = run;
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; the other VM's API answered ${watch.ok} times meanwhile`);
    assert.deepEqual(unexpected.slice(0, 20), [], `${unexpected.length} unexpected answers`);
    assert.deepEqual(watch.failed, [], "the other VM's API failed during the attack");
    assert.ok(watch.ok >= 5, `only ${watch.ok} answers from the other VM's API`);
    assert.deepEqual(await agentPids(agentUid()), agentBefore, 'the agent was restarted');
    assert.deepEqual(await Promise.all(VMS.map((n) => qemuPids(n))), qemuBefore, 'a QEMU was restarted');
    assert.equal((await client(victim).status()).phase, 'Running', "the attacked VM's API answers");
    for (const name of VMS) assert.equal(condition(await runningWithAgent(name), 'AgentConnected')?.status, 'True');
  });

  void it('the node agent killed: its successor adopts both QEMUs; the VMs run on in the same processes and pods', async (t) => {
    const before = new Map<string, { qemu: number; pod: string | undefined }>();
    for (const name of VMS) {
      const [qemu, ...more] = await qemuPids(name);
      assert.ok(qemu !== undefined && more.length === 0, `${name}: one QEMU`);
      before.set(name, { qemu, pod: launcherPods(cluster, s.namespace, name)[0]?.metadata.uid });
    }
    const agent = agentUid();
    const killed = await agentPids(agent);
    assert.ok(killed.length > 0, 'the agent runs');
    for (const pid of killed) process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    // The agent's successor (its container restarted by the node) says which pods it adopted.
    const logDir = path.join(cluster.layout.nodesDir, node?.name ?? '', 'pods', agent);
    const adopted = (): Promise<string[]> => agentLogLines(logDir).then((lines) => lines.filter((l) => l.msg === ADOPTING).map((l) => l.pod ?? ''));
    for (const name of VMS) {
      const podName = launcherPods(cluster, s.namespace, name)[0]?.metadata.name ?? '';
      await eventually(`${podName} adopted by the new agent`, async () => ((await adopted()).includes(podName) ? true : undefined), 120_000);
    }
    for (const name of VMS) {
      const vm = await runningWithAgent(name);
      t.diagnostic(`${name}: Running again with its guest agent ${Date.now() - killedAt} ms after the agent was killed`);
      assert.deepEqual(await qemuPids(name), [before.get(name)?.qemu], `${name}: the same QEMU runs on`);
      assert.equal(launcherPods(cluster, s.namespace, name)[0]?.metadata.uid, before.get(name)?.pod, `${name}: the same launcher pod`);
      assert.equal(vm.status?.guestOSInfo?.id, 'debian');
    }
    const now = await agentPids(agentUid());
    assert.ok(now.length > 0 && now.every((pid) => !killed.includes(pid)), 'a new agent process runs');
  });

  void it('stops through the operator: the agent shuts the guests down and the pods exit', async () => {
    for (const name of VMS) cluster.kubectl(['annotate', 'vm', name, '-n', s.namespace, 'keyvirt.io/request=stop']);
    for (const name of VMS) {
      await waitVm(cluster, { namespace: s.namespace, name }, 'Stopped', (v) => v.status?.phase === 'Stopped', 180_000);
      await eventually(`${name}'s launcher pod gone`, () => (launcherPods(cluster, s.namespace, name).length === 0 ? true : undefined), 60_000);
      const uid = held.get(name)?.metadata.uid;
      assert.ok(uid !== undefined);
      assert.deepEqual(await podProcesses(uid), [], `nothing of ${name}'s pod runs on the node`);
    }
    // Its safety net (ADR 0139) logs any error nobody caught: none was, in either agent.
    const lines = await agentLogLines(path.join(cluster.layout.nodesDir, node?.name ?? '', 'pods', agentUid()));
    assert.ok(lines.some((l) => l.msg === ADOPTING), "the agents' logs are read");
    assert.deepEqual(lines.filter((l) => l.msg?.startsWith('uncaught error') === true), [], 'the agents met no error nobody caught');
  });
});

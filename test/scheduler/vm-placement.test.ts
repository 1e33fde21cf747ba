// The VM scheduler through the real operator: a VM that fits gets a launcher pod
// pinned by required node affinity to the node the scheduler chose, and the
// kube-scheduler binds it there; a VM no node can take is Unschedulable with the
// reasons counted per node, like the kube-scheduler counts them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VirtualMachineInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, condition, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';

const PodJson = z.object({
  spec: z.object({
    nodeName: z.string().optional(),
    affinity: z.object({
      nodeAffinity: z.object({
        requiredDuringSchedulingIgnoredDuringExecution: z.object({
          nodeSelectorTerms: z.array(z.object({ matchExpressions: z.array(z.object({ key: z.string(), operator: z.string(), values: z.array(z.string()) })).optional() })),
        }),
      }),
    }),
  }),
});

void describe('VM placement on the local cluster', { timeout: 10 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;

  const unschedulable = async (name: string): Promise<string> => {
    const vm = await waitVm(cluster, { namespace: s.namespace, name }, 'Unschedulable', (v) => v.status?.phase === 'Unschedulable', 90_000);
    assert.equal(cluster.kubectl(['get', 'pods', '-n', s.namespace, '-l', `keyvirt.io/vm=${name}`, '-o', 'name']).trim(), '', 'no launcher pod');
    return condition(vm, 'Ready')?.message ?? '';
  };

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-sched');
    operator = await startSuiteOperator(cluster, s, 'sched');
  });

  after(async () => {
    await stopOperator(operator);
    await s.cleanup();
  });

  void it('pins the launcher pod to the chosen node and the kube-scheduler binds it there', async () => {
    apply(cluster, testVm(s, guest, { name: 'fits' }));
    const pod = await eventually('the launcher pod bound', () => {
      const out = cluster.kubectl(['get', 'pods', '-n', s.namespace, '-l', 'keyvirt.io/vm=fits', '-o', 'json']);
      const items = z.object({ items: z.array(z.unknown()) }).parse(JSON.parse(out)).items;
      const parsed = items.length === 1 ? PodJson.safeParse(items[0]) : undefined;
      return parsed?.success === true && parsed.data.spec.nodeName !== undefined ? parsed.data : undefined;
    }, 120_000);
    const terms = pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
    assert.equal(terms.length, 1);
    const pin = terms[0]?.matchExpressions?.find((e) => e.key === 'kubernetes.io/hostname');
    assert.deepEqual(pin?.values, [pod.spec.nodeName]);
    assert.equal(pin?.operator, 'In');
    cluster.kubectl(['delete', 'virtualmachine', 'fits', '-n', s.namespace, '--wait=false']);
  });

  void it('a node selector no node matches: Unschedulable, the reason counted per node', async () => {
    const vm: VirtualMachineInput = testVm(s, guest, { name: 'selector', runStrategy: 'Always' });
    vm.spec.nodeSelector = { 'keyvirt.io/test-zone': `nowhere-${s.runId}` };
    apply(cluster, vm);
    const message = await unschedulable('selector');
    assert.match(message, /^0\/\d+ nodes are available: .*\d+ node\(s\) didn't match the VM's node affinity\/selector/);
  });

  void it('under emulation a CPU model the host lacks still places (QEMU emulates it)', async () => {
    const vm: VirtualMachineInput = testVm(s, guest, { name: 'cpu-model', runStrategy: 'Always' });
    vm.spec.template.cpu = { model: 'SapphireRapids-v2', sockets: 1, cores: 1, threads: 1 };
    apply(cluster, vm);
    await eventually('a launcher pod for cpu-model', () => (cluster.kubectl(['get', 'pods', '-n', s.namespace, '-l', 'keyvirt.io/vm=cpu-model', '-o', 'name']).trim() !== '' ? true : undefined), 90_000);
    cluster.kubectl(['delete', 'virtualmachine', 'cpu-model', '-n', s.namespace, '--wait=false']);
  });

  void it('a host device no node offers: Insufficient with the resource name', async () => {
    const vm: VirtualMachineInput = testVm(s, guest, { name: 'gpu', runStrategy: 'Always' });
    vm.spec.evictionStrategy = 'Shutdown';
    vm.spec.template.hostDevices = [{ name: 'gpu0', resourceName: 'keyvirt.io/pci-10de-1eb8' }];
    apply(cluster, vm);
    const message = await unschedulable('gpu');
    assert.match(message, /^0\/\d+ nodes are available: .*\d+ Insufficient keyvirt\.io\/pci-10de-1eb8/);
  });
});

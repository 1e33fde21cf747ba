// Fault suite: two operators elect one leader on a Lease and the standby takes over when
// the leader is killed; an operator killed in the middle of starting a VM is restarted
// and finishes the job with the same single launcher pod; the VM runs on meanwhile.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, operatorKubeconfig, probe, startOperator, OPERATOR_NAMESPACE } from './operator-process.ts';
import { apply, launcherPods, scratch, type Scratch, testVm, waitVm, TEST_RUN_LABEL } from './vm-fixtures.ts';

async function isLeader(op: OperatorProcess): Promise<boolean> {
  const port = await op.healthPort;
  const body = (await probe(port, '/metrics')).body;
  return /^keyvirt_operator_leader 1$/m.test(body);
}

function leaseHolder(cluster: TestCluster, lease: string): string {
  return cluster.kubectl(['get', 'lease', lease, '-n', OPERATOR_NAMESPACE, '-o', 'jsonpath={.spec.holderIdentity}', '--ignore-not-found']).trim();
}

void describe('operator restarts and leader election', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let kubeconfig: string;
  const operators: OperatorProcess[] = [];
  let lease: string;

  function operator(name: string): OperatorProcess {
    const op = startOperator({
      kubeconfig,
      logFile: path.join(s.dir, `${name}.log`),
      identity: `${name}-${s.runId}`,
      leaseName: lease,
      vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
    });
    operators.push(op);
    return op;
  }

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-restart');
    lease = `keyvirt-e2e-${s.runId}`;
    kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  });

  after(async () => {
    for (const op of operators) op.kill('SIGTERM');
    await Promise.race([Promise.all(operators.map((o) => o.exited)), new Promise((r) => setTimeout(r, 20_000))]);
    for (const op of operators) op.kill('SIGKILL');
    cluster.kubectl(['delete', 'lease', lease, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
    await s.cleanup();
  });

  void it('elects one leader; the standby takes over when the leader dies and reconciles', async () => {
    const a = operator('op-a');
    await a.healthPort;
    await eventually('op-a leads', async () => ((await isLeader(a)) ? true : undefined), 60_000);
    const b = operator('op-b');
    await b.healthPort;
    await eventually('op-b ready as a standby', async () => ((await probe(await b.healthPort, '/readyz')).status === 200 ? true : undefined), 60_000);
    assert.equal(await isLeader(b), false, 'only one leader');
    assert.equal(leaseHolder(cluster, lease), a.identity);

    a.kill('SIGKILL');
    await a.exited;
    await eventually('op-b takes over', async () => ((await isLeader(b)) ? true : undefined), 60_000);
    assert.equal(leaseHolder(cluster, lease), b.identity);

    apply(cluster, testVm(s, guest, { name: 'after-takeover', runStrategy: 'Halted' }));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'after-takeover' }, 'reconciled by the new leader', (v) => v.status?.phase === 'Stopped', 60_000);
    assert.ok(vm.metadata.finalizers?.includes('keyvirt.io/graceful-stop'));
    b.kill('SIGTERM');
    const exit = await b.exited;
    const tail = await b.logTail();
    assert.equal(exit, 0, `a clean stop exits 0; the operator's log ends:\n${tail}`);
    assert.ok(!tail.includes('did not drain'), 'nothing holds the stopped operator open');
    assert.equal(leaseHolder(cluster, lease), '', 'a clean stop releases the lease');
  });

  void it('an operator killed mid-start comes back to one launcher pod and a Running VM; the VM runs while it is down', async () => {
    const first = operator('op-c');
    await first.healthPort;
    apply(cluster, testVm(s, guest, { name: 'mid-start' }));
    await eventually('the launcher pod created', () => (launcherPods(cluster, s.namespace, 'mid-start').length > 0 ? true : undefined), 120_000);
    first.kill('SIGKILL');
    await first.exited;
    const podBefore = launcherPods(cluster, s.namespace, 'mid-start');
    assert.equal(podBefore.length, 1);

    const second = operator('op-d');
    await second.healthPort;
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'mid-start' }, 'Running after the operator restart', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined);
    const pods = launcherPods(cluster, s.namespace, 'mid-start');
    assert.equal(pods.length, 1, 'no second launcher pod');
    assert.equal(pods[0]?.metadata.uid, podBefore[0]?.metadata.uid, 'the same launcher pod');
    assert.equal(vm.status?.launcherPod, pods[0]?.metadata.name);

    second.kill('SIGKILL');
    await second.exited;
    await new Promise((r) => setTimeout(r, 5000));
    const during = launcherPods(cluster, s.namespace, 'mid-start');
    assert.equal(during[0]?.status?.phase, 'Running', 'the VM keeps running while no operator runs');
    assert.equal(during[0]?.metadata.uid, podBefore[0]?.metadata.uid);

    const third = operator('op-e');
    await third.healthPort;
    const again = await waitVm(cluster, { namespace: s.namespace, name: 'mid-start' }, 'still Running, agent connected', (v) => v.status?.phase === 'Running' && v.status.conditions?.some((c) => c.type === 'AgentConnected' && c.status === 'True') === true);
    assert.equal(launcherPods(cluster, s.namespace, 'mid-start').length, 1);
    assert.equal(again.status?.launcherPod, pods[0]?.metadata.name);
  });
});

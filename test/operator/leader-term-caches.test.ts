// A leader term ends, the caches stay (ADR 0117): the real operator reaches the real API
// server through a proxy that cuts every connection and refuses new ones for longer than
// the renew deadline, as an API server restart looks to it. It stops leading, ends its
// controllers and, once the API server answers, leads again with fresh controllers over
// the same caches: its informers resume or relist in place (no second set of caches), the
// VM it ran keeps its one launcher pod, and a VM created afterwards is reconciled by the
// new term. On the local cluster with a kwok node (launcher pods bound, nothing runs).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kubeconfigThrough, startApiOutageProxy, type ApiOutageProxy } from '../support/api-outage-proxy.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { kwokVm, startKwokNodes, type KwokNodes } from '../support/kwok.ts';
import { metricSum, metricValue } from '../support/operator-metrics-text.ts';
import { type OperatorProcess, operatorKubeconfig, probe, startOperator, stopOperator } from './operator-process.ts';
import { apply, getVm, launcherPods, scratch, type Scratch, TEST_RUN_LABEL } from './vm-fixtures.ts';

/** Longer than the renew deadline startOperator gives (4 s) and the lease (6 s). */
const OUTAGE_MS = 8000;

void describe('a lost lease ends a term; the next one runs on the same caches', { timeout: 10 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let kwok: KwokNodes | undefined;
  let api: ApiOutageProxy | undefined;
  let operator: OperatorProcess | undefined;
  let port = 0;

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-term');
    kwok = await startKwokNodes(cluster, { label: { key: TEST_RUN_LABEL, value: s.runId }, count: 1, namePrefix: `kwok-${s.runId}`, runPods: true, dir: s.dir });
    api = await startApiOutageProxy({ host: cluster.apiServer.host, port: cluster.apiServer.port });
    const kubeconfig = await kubeconfigThrough(await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig')), api.url);
    operator = startOperator({
      kubeconfig,
      logFile: path.join(s.dir, 'operator.log'),
      identity: `e2e-term-${s.runId}`,
      leaseName: `keyvirt-e2e-${s.runId}`,
      vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
    });
    port = await operator.healthPort;
  });

  after(async () => {
    if (operator !== undefined) await stopOperator(operator);
    await api?.close();
    await s.cleanup();
    kwok?.stop();
  });

  const metrics = async (): Promise<string> => (await probe(port, '/metrics')).body;
  const lists = (text: string): number => metricSum(text, 'keyvirt_informer_events_total', { kind: /^(VirtualMachine|Pod)$/, event: 'list' });
  const messages = async (msg: string): Promise<number> => (await (operator as OperatorProcess).logLines()).filter((l) => l.msg === msg).length;
  const withPod = (name: string): Promise<string> =>
    eventually(
      `${name} has its launcher pod and a phase`,
      () => {
        const pods = launcherPods(cluster, s.namespace, name);
        const phase = getVm(cluster, s.namespace, name)?.status?.phase;
        return pods.length === 1 && phase !== undefined ? phase : undefined;
      },
      120_000,
    );

  void it('leads again after an outage longer than the renew deadline, with the caches it had; the running VM keeps one launcher pod and a new VM is reconciled', async (t) => {
    assert.ok(api);
    apply(cluster, kwokVm(s, 'before', s.runId));
    await withPod('before');
    const listsBefore = lists(await metrics());
    assert.equal(await messages('became leader'), 1);

    await api.outage(OUTAGE_MS);
    await eventually('the lease lost and won again', async () => ((await messages('became leader')) === 2 ? true : undefined), 120_000);
    assert.equal(await messages('lost the leader lease; starting over with fresh controllers'), 1);
    assert.equal(await messages('health and metrics server listening'), 1, 'one health server for the life of the process');
    await eventually('the leader gauge at 1', async () => (metricValue(await metrics(), 'keyvirt_operator_leader') === 1 ? true : undefined), 30_000);

    apply(cluster, kwokVm(s, 'after', s.runId));
    t.diagnostic(`after the new term: before=${await withPod('before')} after=${await withPod('after')}`);
    // A few seconds of the new term over the VM it found: still its one launcher pod.
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(launcherPods(cluster, s.namespace, 'before').length, 1, 'no second launcher pod for the VM the last term ran');
    const listsAfter = lists(await metrics());
    t.diagnostic(`VirtualMachine and Pod lists: ${String(listsBefore)} before the outage, ${String(listsAfter)} after`);
    // The watches resume from their resourceVersion; a compaction during the outage would
    // make each relist once, in place. Never the two fresh informers of a new set of caches and more.
    assert.ok(listsAfter - listsBefore <= 2, `at most one relist per kind (${String(listsAfter - listsBefore)})`);
    assert.equal(metricSum(await metrics(), 'keyvirt_informer_events_total', { kind: 'VirtualMachine', event: 'connected' }) >= 2, true, 'the VM watch connected again');
  });
});

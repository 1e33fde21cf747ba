// Leader election and status writes against the real API server (ADR 0102):
// - the leader reaches the API server through a TCP proxy that then stalls: its renewal
//   hangs (its request timeout is set far beyond the lease on purpose), yet it stops
//   leading at its renew deadline — before the candidate, connected directly, takes
//   the lease over;
// - a VM status write computed from a stale view is refused with 409 and does not
//   overwrite the newer status.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { VirtualMachine } from '@keyvirt/crds';
import { pino } from 'pino';
import { sleepOn, systemClock } from '../../operator/src/runtime/clock.ts';
import { KubeApiError, KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { LeaderElector } from '../../operator/src/runtime/leader-election.ts';
import { VmStatusWriter } from '../../operator/src/vm/status-writer.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { StallingProxy } from '../support/stalling-proxy.ts';

const LEASE_MS = 4000;
const RENEW_DEADLINE_MS = 2500;
const RETRY_MS = 500;
const log = pino({ level: process.env.KEYVIRT_LOG_LEVEL ?? 'silent' });

function kubeConfigVia(file: string, server?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  if (server === undefined) return kc;
  const via = new KubeConfig();
  via.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return via;
}

void describe('leader election and status writes on the real API server', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  const ns = `kv-le-${randomBytes(3).toString('hex')}`;

  before(async () => {
    cluster = await ensureCluster();
    cluster.kubectl(['create', 'namespace', ns]);
  });

  after(() => {
    if (cluster === undefined) return;
    try {
      cluster.kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
    } finally {
      cluster.release();
    }
  });

  void it('a leader whose renewals stall stops before the candidate takes over', async (t) => {
    const proxy = new StallingProxy({ host: cluster.apiServer.host, port: cluster.apiServer.port });
    const proxyPort = await proxy.listen();
    after(() => proxy.close());
    // The stalled leader's requests would wait a minute: only its deadline timer can stop it in time.
    const viaProxy = new KubeClient(kubeConfigVia(cluster.kubeconfig, `https://127.0.0.1:${proxyPort}`), 'le-test', { requestTimeoutMs: 60_000 });
    const direct = new KubeClient(kubeConfigVia(cluster.kubeconfig), 'le-test', { requestTimeoutMs: 60_000 });
    const elector = (client: KubeClient, identity: string): LeaderElector =>
      new LeaderElector({
        client,
        namespace: ns,
        name: 'stall',
        identity,
        log: log.child({ identity }),
        clock: systemClock,
        sleep: sleepOn(systemClock),
        leaseDurationMs: LEASE_MS,
        renewDeadlineMs: RENEW_DEADLINE_MS,
        retryPeriodMs: RETRY_MS,
      });
    const times: Record<string, number> = {};
    const work = (who: string) => async (signal: AbortSignal): Promise<void> => {
      times[`${who} leads`] = performance.now();
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      times[`${who} stops`] = performance.now();
    };
    const stopA = new AbortController();
    const stopB = new AbortController();
    const runA = elector(viaProxy, 'a').run(stopA.signal, work('a'));
    const deadline = Date.now() + 30_000;
    while (times['a leads'] === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(times['a leads'] !== undefined, 'a never led');
    const runB = elector(direct, 'b').run(stopB.signal, work('b'));
    await new Promise((r) => setTimeout(r, 3 * RETRY_MS));
    assert.equal(times['b leads'], undefined, 'b led while a renewed');
    proxy.stall();
    const stalledAt = performance.now();
    while ((times['a stops'] === undefined || times['b leads'] === undefined) && Date.now() < deadline + 30_000) await new Promise((r) => setTimeout(r, 100));
    stopB.abort();
    stopA.abort();
    const [outcomeA] = await Promise.all([runA, runB]);
    const aStops = times['a stops'];
    const bLeads = times['b leads'];
    t.diagnostic(`after the stall: a stopped at +${Math.round((aStops ?? NaN) - stalledAt)} ms, b led at +${Math.round((bLeads ?? NaN) - stalledAt)} ms (lease ${LEASE_MS} ms, renew deadline ${RENEW_DEADLINE_MS} ms)`);
    assert.ok(aStops !== undefined, 'a never stopped leading');
    assert.ok(bLeads !== undefined, 'b never took over');
    assert.ok(aStops < bLeads, `a stopped ${Math.round(aStops - stalledAt)} ms after the stall, b led after ${Math.round(bLeads - stalledAt)} ms`);
    assert.ok(aStops - stalledAt <= RENEW_DEADLINE_MS + 200, `a stopped ${Math.round(aStops - stalledAt)} ms after the stall (renew deadline ${RENEW_DEADLINE_MS} ms)`);
    assert.equal(outcomeA, 'lost');
  });

  void it('a status write computed from a stale view is refused with 409 and overwrites nothing', async () => {
    const client = new KubeClient(kubeConfigVia(cluster.kubeconfig), 'keyvirt-operator');
    const events = { record: (): Promise<void> => Promise.resolve() };
    const path = `/apis/keyvirt.io/v1alpha1/namespaces/${ns}/virtualmachines`;
    await client.create(path, {
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachine',
      metadata: { name: 'stale-writer', labels: { 'keyvirt.io/test-run': ns } },
      spec: { runStrategy: 'Halted', template: { memory: { size: '64Mi' } } },
    });
    const read = async (): Promise<VirtualMachine> => VirtualMachine.parse(await client.get(`${path}/stale-writer`));
    const seenByOld = await read();
    const newLeader = new VmStatusWriter(client, events);
    assert.equal(await newLeader.write(seenByOld, { phase: 'Stopped', ready: false }, log), true);
    const oldLeader = new VmStatusWriter(client, events);
    await assert.rejects(
      oldLeader.write(seenByOld, { phase: 'Starting', ready: false }, log),
      (err: unknown) => err instanceof KubeApiError && err.statusCode === 409,
    );
    const now = await read();
    assert.equal(now.status?.phase, 'Stopped', 'the stale write overwrote the newer status');
    // From a fresh view the same write goes through.
    assert.equal(await oldLeader.write(now, { phase: 'Starting', ready: false }, log), true);
    assert.equal((await read()).status?.phase, 'Starting');
  });
});

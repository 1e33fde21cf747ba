// The runtime's informer and work queue against the real API server: list, then watch;
// reconnect from the last resourceVersion each time the server ends the watch; adds,
// updates and deletes arrive in order and repeats are merged in the queue.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { z } from 'zod';
import { systemClock, sleepOn } from '../../operator/src/runtime/clock.ts';
import { Informer, type InformerObserver } from '../../operator/src/runtime/informer.ts';
import { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { collectionPath, keyOf, objectPath, type ResourceType } from '../../operator/src/runtime/resource.ts';
import { WorkQueue } from '../../operator/src/runtime/work-queue.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';

const configMapType: ResourceType = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };
const configMap = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }),
  data: z.record(z.string(), z.string()).optional(),
});
type ConfigMap = z.infer<typeof configMap>;

void describe('informer against the API server', { timeout: 5 * 60_000 }, () => {
  let cluster: TestCluster;
  let client: KubeClient;
  const namespace = `kv-informer-${randomBytes(3).toString('hex')}`;

  before(async () => {
    cluster = await ensureCluster();
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    client = new KubeClient(kc, 'keyvirt-informer-test');
    cluster.kubectl(['create', 'namespace', namespace]);
  });

  after(() => {
    cluster.kubectl(['delete', 'namespace', namespace, '--wait=false', '--ignore-not-found']);
  });

  void it('lists, watches, survives server-side watch ends, and feeds a merging queue', async () => {
    const create = (name: string, value: string): Promise<unknown> =>
      client.create(collectionPath(configMapType, namespace), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { 'keyvirt.io/informer-test': 'yes' } }, data: { v: value } });
    await create('before-start', '0');
    const lifecycle: string[] = [];
    const observer: InformerObserver = {
      onList: () => lifecycle.push('list'),
      onWatchConnected: () => lifecycle.push('connected'),
      onWatchError: (_k, reason) => lifecycle.push(reason),
      onBadObject: () => lifecycle.push('bad'),
    };
    const informer = new Informer<ConfigMap>({
      client,
      type: configMapType,
      schema: configMap,
      namespace,
      labelSelector: 'keyvirt.io/informer-test=yes',
      log: pino({ level: 'silent' }),
      sleep: sleepOn(systemClock),
      observer,
      watchTimeoutSeconds: 1,
    });
    const queue = new WorkQueue({ clock: systemClock });
    const seen: string[] = [];
    informer.addHandlers({
      onAdd: (cm) => {
        seen.push(`add ${cm.metadata.name}=${cm.data?.v ?? ''}`);
        queue.add(keyOf(cm.metadata));
      },
      onUpdate: (_old, cm) => {
        seen.push(`update ${cm.metadata.name}=${cm.data?.v ?? ''}`);
        queue.add(keyOf(cm.metadata));
      },
      onDelete: (cm) => {
        seen.push(`delete ${cm.metadata.name}`);
        queue.add(keyOf(cm.metadata));
      },
    });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    try {
      await informer.waitForSync(stop.signal);
      assert.deepEqual(seen, ['add before-start=0']);
      // Let the server end the watch a few times, then change things.
      await eventually('three watch connections', () => (lifecycle.filter((l) => l === 'connected').length >= 3 ? true : undefined), 30_000, 200);
      await create('during', '1');
      for (const v of ['2', '3', '4']) {
        await client.patch(objectPath(configMapType, { namespace, name: 'during' }), { data: { v } }, 'merge');
      }
      await client.delete(objectPath(configMapType, { namespace, name: 'before-start' }));
      await eventually('every change seen', () => (seen.includes('delete before-start') && seen.includes('update during=4') ? true : undefined), 30_000, 100);
      assert.deepEqual(seen, ['add before-start=0', 'add during=1', 'update during=2', 'update during=3', 'update during=4', 'delete before-start']);
      assert.equal(lifecycle.filter((l) => l === 'list').length, 1, 'reconnects resume from the last resourceVersion, no relist');
      assert.equal(informer.get(`${namespace}/during`)?.data?.v, '4');
      assert.equal(informer.get(`${namespace}/before-start`), undefined);
      assert.equal(queue.depth, 2, 'five events for two keys are two queue entries');
    } finally {
      stop.abort();
      await running;
      await queue.shutDown();
    }
  });
});

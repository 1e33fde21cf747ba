// The parts of operator-scale's burst that its floor (scale-floor.ts) shares: the VMs as the
// benchmark writes them, their creation straight through the API, and the benchmark's
// own watch that times each launcher pod's creation and binding.
import { setTimeout as sleep } from 'node:timers/promises';
import type { VirtualMachineInput } from '@keyvirt/crds';
import { pino } from 'pino';
import { z } from 'zod';
import { sleepOn, systemClock } from '../../operator/src/runtime/clock.ts';
import { Informer } from '../../operator/src/runtime/informer.ts';
import { isNotFound, type KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { stripUnreadMetadata } from '../../operator/src/runtime/object-trim.ts';
import { coreTypes } from '../../operator/src/runtime/resource.ts';
import { runWrites } from './bounded-writes.ts';
import { kwokVm } from './kwok.ts';
import type { Scratch } from '../operator/vm-fixtures.ts';

/** VM creations in flight during the burst. */
export const BURST_IN_FLIGHT = 32;

export type EvictionStrategy = 'LiveMigrate' | 'Shutdown';

/**
 * The benchmark's VM number `i` on the run's kwok nodes (`kwokLabel`): see kwokVm. Its
 * evictionStrategy decides whether its namespace gets KeyVirt's launcher disruption budget
 * (LiveMigrate, the default) or not (Shutdown).
 */
export function vmManifest(s: Scratch, kwokLabel: string, i: number, evictionStrategy: EvictionStrategy): VirtualMachineInput {
  const vm = kwokVm(s, `scale-${i}`, kwokLabel);
  return { ...vm, spec: { ...vm.spec, evictionStrategy } };
}

/** Creates `items` straight through the API, `inFlight` at a time (kubectl would send one object after the other). */
export async function createAll(client: KubeClient, namespace: string, items: readonly unknown[], inFlight: number): Promise<void> {
  await runWrites(items.length, inFlight, (i) => client.create(`/apis/keyvirt.io/v1alpha1/namespaces/${namespace}/virtualmachines`, items[i]));
}

/** Times at which the bench saw each launcher pod created and bound (its own watch on the shared API server). */
export function podTimes(client: KubeClient, namespace: string, signal: AbortSignal): { created: Map<string, number>; bound: Map<string, number>; synced: Promise<void> } {
  const created = new Map<string, number>();
  const bound = new Map<string, number>();
  const schema = z.object({
    metadata: z.object({ name: z.string(), namespace: z.string().optional(), resourceVersion: z.string().optional() }),
    spec: z.object({ nodeName: z.string().optional() }),
  });
  const informer = new Informer({
    client,
    type: coreTypes.pod,
    schema,
    namespace,
    labelSelector: 'keyvirt.io/vm',
    log: pino({ level: 'warn' }),
    sleep: sleepOn(systemClock),
    pageSize: 500,
    transform: stripUnreadMetadata,
  });
  const seen = (pod: z.infer<typeof schema>): void => {
    const now = Date.now();
    if (!created.has(pod.metadata.name)) created.set(pod.metadata.name, now);
    if (pod.spec.nodeName !== undefined && !bound.has(pod.metadata.name)) bound.set(pod.metadata.name, now);
  };
  informer.addHandlers({ onAdd: seen, onUpdate: (_o, p) => seen(p) });
  void informer.run(signal);
  return { created, bound, synced: informer.waitForSync(signal) };
}

/** Waits until `bound` holds `count` pods, saying how far it got every 5 s. */
export async function untilBound(created: ReadonlyMap<string, number>, bound: ReadonlyMap<string, number>, count: number, started: number, say: (line: string) => void): Promise<void> {
  let lastReport = 0;
  while (bound.size < count) {
    if (Date.now() - started > 90 * 60_000) throw new Error(`only ${bound.size}/${count} launcher pods bound after 90 min`);
    await sleep(250);
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      say(`${created.size} launcher pods created, ${bound.size} bound after ${Date.now() - started} ms`);
    }
  }
}

/** CPU milliseconds per VM (or pod), `n/a` when the process was not measured. */
export function perVm(ms: number | undefined, vms: number): string {
  return ms === undefined ? 'n/a' : (ms / vms).toFixed(1);
}

/** Resolves once `created` holds `count` pods (checked every 50 ms), or rejects when `signal` aborts. */
export async function untilCreated(created: ReadonlyMap<string, number>, count: number, signal: AbortSignal): Promise<void> {
  while (created.size < count) {
    signal.throwIfAborted();
    await sleep(50);
  }
}

/**
 * Waits until a run's namespace is gone (`scratch().cleanup` only asks for its deletion).
 * The namespace controller then deletes what is left in it (thousands of Secrets and
 * Events after a burst) and the garbage collector the VMs' dependents; a run that starts
 * before that shares the API server, etcd and the controller manager with it (ADR 0124).
 */
export async function untilNamespaceGone(client: KubeClient, namespace: string, say: (line: string) => void, timeoutMs = 15 * 60_000): Promise<void> {
  const started = Date.now();
  for (;;) {
    try {
      await client.get(`/api/v1/namespaces/${namespace}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      say(`namespace ${namespace} gone after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`namespace ${namespace} still exists ${timeoutMs / 1000} s after its deletion`);
    await sleep(1_000);
  }
}

/**
 * Deletes every object of `collection` (a namespaced list path) with no grace period. The
 * API server cuts a delete-collection of thousands of objects short at its request
 * timeout (60 s) and leaves the rest: the delete is sent again until a list finds none,
 * at most `rounds` times. One request deletes them all; `kubectl delete --all` would send
 * one per object and then wait for each at its client rate limit.
 */
export async function deleteCollection(client: KubeClient, collection: string, say: (line: string) => void, rounds = 20): Promise<void> {
  for (let round = 1; round <= rounds; round += 1) {
    await client
      .request('DELETE', collection, { body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 }, timeoutMs: 300_000 })
      .catch((err: unknown) => say(`delete ${collection} (round ${round}): ${String(err)}`));
    const left = z.object({ items: z.array(z.unknown()) }).parse(await client.get(`${collection}?limit=1`));
    if (left.items.length === 0) return;
  }
  throw new Error(`${collection} still holds objects after ${rounds} delete-collections`);
}

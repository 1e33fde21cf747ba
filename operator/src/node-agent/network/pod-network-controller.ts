// The node agent's pod-network pass (ADR 0094): every interval, the launcher pods the
// API server places on this node that ask for it (pod-network-request.ts) get their
// network namespace prepared once (pod-network-setup.ts), entered through a process of
// the pod found in the host's /proc (pod-netns.ts). A pod whose processes have not
// started yet is tried again on the next pass; a refused or failed pod is logged once.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { isNotFound, type KubeClient } from '../../runtime/kube-client.ts';
import { objectPath } from '../../runtime/resource.ts';
import { LABEL_VM, LAUNCHER_POD_SELECTOR, virtualMachineType } from '../../vm/names.ts';
import { kubeLauncherPodApi } from '../kube-node-api.ts';
import { findPodNetns } from './pod-netns.ts';
import { asksForPodNetwork, decidePodNetwork, LauncherPodSchema, VmViewSchema } from './pod-network-request.ts';
import { nsenterRunner, setUpPodNetwork } from './pod-network-setup.ts';
import type { NetnsRunner } from './pod-network-setup.ts';

export interface PodNetworkApi {
  listPods: (fieldSelector: string, labelSelector: string) => Promise<unknown>;
  /** The VirtualMachine, or undefined when it does not exist. */
  readVm: (namespace: string, name: string) => Promise<unknown>;
}

export interface PodNetworkOptions {
  api: PodNetworkApi;
  node: string;
  procRoot: string;
  /** The uid launchers run as (the tap's owner). */
  launcherUid: number;
  intervalMs: number;
  log: Logger;
  runner?: (netnsPath: string) => NetnsRunner;
}

const PodList = z.object({ items: z.array(z.unknown()) });

export function kubePodNetworkApi(client: KubeClient): PodNetworkApi {
  return {
    listPods: kubeLauncherPodApi(client).listPods,
    readVm: async (namespace, name) => {
      try {
        return await client.get(objectPath(virtualMachineType, { namespace, name }));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
  };
}

/** One pass; `done` holds the UIDs of pods already prepared or refused. */
export async function podNetworkPass(o: PodNetworkOptions, done: Set<string>): Promise<void> {
  const list = PodList.parse(await o.api.listPods(`spec.nodeName=${o.node}`, LAUNCHER_POD_SELECTOR));
  const seen = new Set<string>();
  for (const item of list.items) {
    const parsed = LauncherPodSchema.safeParse(item);
    if (!parsed.success) continue;
    const pod = parsed.data;
    seen.add(pod.metadata.uid);
    if (done.has(pod.metadata.uid) || !asksForPodNetwork(pod, o.node)) continue;
    const log = o.log.child({ namespace: pod.metadata.namespace, pod: pod.metadata.name, podUid: pod.metadata.uid });
    const vmName = pod.metadata.labels[LABEL_VM];
    const rawVm = vmName === undefined ? undefined : await o.api.readVm(pod.metadata.namespace, vmName);
    const vm = rawVm === undefined ? undefined : VmViewSchema.safeParse(rawVm).data;
    const decision = decidePodNetwork(pod, vm, o.node);
    if (decision.kind === 'skip') continue;
    if (decision.kind === 'refuse') {
      done.add(pod.metadata.uid);
      log.warn({ reason: decision.reason }, 'pod network set-up refused');
      continue;
    }
    const netns = await findPodNetns(o.procRoot, pod.metadata.uid);
    if (netns === undefined) continue; // its container has not started yet
    try {
      const outcome = await setUpPodNetwork((o.runner ?? nsenterRunner)(netns.path), { ...decision.request, launcherUid: o.launcherUid });
      log.info({ result: outcome.result, binding: decision.request.binding, guest: outcome.lease?.address, pid: netns.pid }, 'pod network prepared');
    } catch (err) {
      log.error({ err }, 'pod network set-up failed');
    }
    done.add(pod.metadata.uid);
  }
  for (const uid of done) if (!seen.has(uid)) done.delete(uid);
}

/** Runs passes until `signal` aborts. */
export async function runPodNetworkSetup(o: PodNetworkOptions, signal: AbortSignal): Promise<void> {
  const done = new Set<string>();
  o.log.info({ node: o.node, intervalMs: o.intervalMs }, 'pod network set-up running');
  while (!signal.aborted) {
    try {
      await podNetworkPass(o, done);
    } catch (err) {
      o.log.warn({ err }, 'pod network pass failed');
    }
    await sleep(o.intervalMs, undefined, { signal }).catch(() => undefined);
  }
}

// The simulated kubelet of one node: registers the Node, renews its Lease and
// status, watches the pods bound to it and runs each through a PodRunner. Its device
// manager (device-manager.ts) takes device-plugin registrations on
// <state-dir>/device-plugins/kubelet.sock; with `devicePlugin: 'builtin'` the node agent's
// device plugins (operator/src/node-agent/device-plugin) run in this process, as the node
// agent's DaemonSet pod would on the node, and pods wait for them to register.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ApiException, CoordinationV1Api, CoreV1Api, KubeConfig, ListWatch, PatchStrategy, setHeaderOptions, V1LeaseSpec, V1MicroTime, Watch,
} from '@kubernetes/client-node';
import type { V1Node, V1NodeStatus, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { nodeSlice } from '../cluster/layout.ts';
import type { NodeSlice } from '../cluster/layout.ts';
import { joinNodeFreezer } from './cgroups.ts';
import type { ImageTableOptions } from './images.ts';
import { deleteStalePodNetworks } from './pod-network.ts';
import { runDevicePlugins } from '../../operator/src/node-agent/device-plugin/device-plugins.ts';
import { DEFAULT_UNITS, DEVICE_KINDS } from '../../operator/src/node-agent/device-plugin/devices.ts';
import { DeviceManager } from './device-manager.ts';
import { PodRunner } from './pod-runner.ts';
import type { PodApi } from './pod-runner.ts';
import type { StorageView } from './storage-view.ts';

export interface NodeAgentOptions {
  readonly name: string;
  readonly index: number;
  readonly kubeconfigPath: string;
  readonly stateDir: string;
  readonly images: ImageTableOptions;
  readonly capacity: { readonly cpu: string; readonly memory: string; readonly pods: number };
  readonly labels: Readonly<Record<string, string>>;
  readonly taints: readonly { readonly key: string; readonly value: string | undefined; readonly effect: string }[];
  readonly kubernetesVersion: string;
  readonly leaseDurationSeconds: number;
  /** Host paths under `storageView.root` are reached through the node's own mirror of it. */
  readonly storageView?: StorageView;
  /** Run the node agent's device plugins in this process, or leave registration to another process. */
  readonly devicePlugin: 'builtin' | 'external';
}

function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

async function orUndefined<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (isStatus(err, 404)) return undefined;
    throw err;
  }
}

/** Ignores 404 (already gone) and 409 (a newer object of the same name). */
async function ignoreGone(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (err) {
    if (isStatus(err, 404) || isStatus(err, 409)) return;
    throw err;
  }
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** True when the CPU offers hardware virtualisation (vmx/svm) and /dev/kvm exists. */
export function hardwareKvm(): boolean {
  const flags = fs.readFileSync('/proc/cpuinfo', 'utf8');
  return fs.existsSync('/dev/kvm') && /\b(vmx|svm)\b/.test(flags);
}

export class NodeAgent {
  readonly #opts: NodeAgentOptions;
  readonly #log: Logger;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #kc: KubeConfig;
  readonly #slice: NodeSlice;
  readonly #runners = new Map<string, PodRunner>();
  readonly #usedIps = new Set<string>();
  readonly #abort = new AbortController();
  #informer: ListWatch<V1Pod> | undefined;
  readonly #devices: DeviceManager;
  #statusPatch: Promise<void> | undefined;
  #statusDirty = false;

  constructor(opts: NodeAgentOptions, log: Logger) {
    this.#opts = opts;
    this.#log = log;
    this.#kc = new KubeConfig();
    this.#kc.loadFromFile(opts.kubeconfigPath);
    this.#core = this.#kc.makeApiClient(CoreV1Api);
    this.#coordination = this.#kc.makeApiClient(CoordinationV1Api);
    this.#slice = nodeSlice(opts.index);
    this.#devices = new DeviceManager({ dir: this.devicePluginDir, log, onChange: () => this.#patchStatusSoon() });
  }

  /** The kubelet's device-plugins directory of this node. */
  get devicePluginDir(): string {
    return path.join(this.#opts.stateDir, 'device-plugins');
  }

  async run(): Promise<void> {
    joinNodeFreezer(this.#opts.name);
    deleteStalePodNetworks(this.#opts.index, new Set());
    await this.#register();
    await this.#devices.start();
    if (this.#opts.devicePlugin === 'builtin') await this.#startBuiltinDevicePlugins();
    void this.#heartbeatLoop();
    this.#watchPods();
    this.#log.info({ nodeIp: this.#slice.nodeIp, podCidr: this.#slice.podCidr }, 'node running');
  }

  async #register(): Promise<void> {
    const o = this.#opts;
    const node: V1Node = {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name: o.name, labels: { ...o.labels }, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } },
      spec: { podCIDR: this.#slice.podCidr, podCIDRs: [this.#slice.podCidr], taints: o.taints.length === 0 ? undefined : [...o.taints] },
    };
    for (;;) {
      try {
        const existing = await orUndefined(this.#core.readNode({ name: o.name }));
        if (existing === undefined) await this.#core.createNode({ body: node });
        else await this.#core.patchNode({ name: o.name, body: { metadata: { labels: o.labels } } }, mergePatch);
        await this.#core.patchNodeStatus({ name: o.name, body: { status: this.#nodeStatus() } }, mergePatch);
        return;
      } catch (err) {
        this.#log.warn({ err }, 'node registration failed; retrying');
        await sleep(2000, undefined, { signal: this.#abort.signal });
      }
    }
  }

  /** Starts the node agent's plugins here and waits (at most 15 s) until each device of the host is registered. */
  async #startBuiltinDevicePlugins(): Promise<void> {
    const log = this.#log.child({ component: 'device-plugins' });
    runDevicePlugins({ pluginDir: this.devicePluginDir, devRoot: '/dev', units: DEFAULT_UNITS, log }, this.#abort.signal)
      .catch((err: unknown) => log.error({ err }, 'device plugins failed'));
    const present = DEVICE_KINDS.filter((k) => fs.existsSync(k.hostPath)).map((k) => k.resource);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !present.every((r) => this.#devices.registered().includes(r))) await sleep(100);
    this.#log.info({ present, registered: this.#devices.registered() }, 'device plugins registered');
  }

  /** Coalesced status write after the device manager's resources changed. */
  #patchStatusSoon(): void {
    this.#statusDirty = true;
    if (this.#statusPatch !== undefined) return;
    this.#statusPatch = (async () => {
      while (this.#statusDirty && !this.#abort.signal.aborted) {
        this.#statusDirty = false;
        try {
          await this.#core.patchNodeStatus({ name: this.#opts.name, body: { status: this.#nodeStatus() } }, mergePatch);
        } catch (err) {
          this.#log.warn({ err }, 'node status update failed; sending it again');
          this.#statusDirty = true;
          await sleep(1000);
        }
      }
      this.#statusPatch = undefined;
    })();
  }

  #nodeStatus(): V1NodeStatus {
    const now = new Date();
    const cond = (type: string, status: string, reason: string, message: string): NonNullable<V1NodeStatus['conditions']>[number] => ({
      type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now,
    });
    const { cpu, memory, pods } = this.#opts.capacity;
    const resources = { cpu, memory, pods: `${pods}`, 'ephemeral-storage': '100Gi' };
    const devices = this.#devices.resources();
    return {
      capacity: { ...resources, ...devices.capacity },
      allocatable: { ...resources, ...devices.allocatable },
      addresses: [{ type: 'InternalIP', address: this.#slice.nodeIp }, { type: 'Hostname', address: this.#opts.name }],
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', 'keyvirt node simulator is posting ready status'),
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
      nodeInfo: {
        architecture: 'amd64', operatingSystem: 'linux', osImage: 'KeyVirt simulated node',
        kernelVersion: os.release(), kubeletVersion: this.#opts.kubernetesVersion, kubeProxyVersion: '',
        containerRuntimeVersion: 'keyvirt-nodesim://0.1.0', machineID: this.#opts.name,
        systemUUID: this.#opts.name, bootID: `${process.pid}`,
      },
    };
  }

  async #heartbeatLoop(): Promise<void> {
    let lastStatus = Date.now();
    while (!this.#abort.signal.aborted) {
      try {
        await this.#renewLease();
        if (Date.now() - lastStatus >= 10_000) {
          await this.#core.patchNodeStatus({ name: this.#opts.name, body: { status: this.#nodeStatus() } }, mergePatch);
          lastStatus = Date.now();
        }
      } catch (err) {
        this.#log.warn({ err }, 'heartbeat failed');
      }
      await sleep(Math.max(1000, (this.#opts.leaseDurationSeconds * 1000) / 4), undefined, { signal: this.#abort.signal }).catch(() => undefined);
    }
  }

  async #renewLease(): Promise<void> {
    const name = this.#opts.name;
    const namespace = 'kube-node-lease';
    const spec = { holderIdentity: name, leaseDurationSeconds: this.#opts.leaseDurationSeconds, renewTime: new V1MicroTime() };
    const lease = await orUndefined(this.#coordination.readNamespacedLease({ name, namespace }));
    if (lease === undefined) {
      const node = await this.#core.readNode({ name });
      await this.#coordination.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata?.uid ?? '' }] },
          spec,
        },
      });
      return;
    }
    lease.spec ??= new V1LeaseSpec();
    lease.spec.holderIdentity = spec.holderIdentity;
    lease.spec.leaseDurationSeconds = spec.leaseDurationSeconds;
    lease.spec.renewTime = spec.renewTime;
    await this.#coordination.replaceNamespacedLease({ name, namespace, body: lease });
  }

  #watchPods(): void {
    const fieldSelector = `spec.nodeName=${this.#opts.name}`;
    const informer = new ListWatch<V1Pod>(
      '/api/v1/pods', new Watch(this.#kc), () => this.#core.listPodForAllNamespaces({ fieldSelector }),
      false, undefined, fieldSelector,
    );
    informer.on('add', (pod) => this.#reconcile(pod));
    informer.on('update', (pod) => this.#reconcile(pod));
    informer.on('delete', (pod) => this.#forget(pod));
    informer.on('error', (err: unknown) => {
      if (this.#abort.signal.aborted) return;
      this.#log.warn({ err }, 'pod watch failed; restarting');
      setTimeout(() => void informer.start().catch(() => undefined), 2000);
    });
    this.#informer = informer;
    void informer.start().catch((err: unknown) => this.#log.warn({ err }, 'pod watch start failed'));
  }

  #allocateIp(preferred: string | undefined): string {
    const candidates = preferred !== undefined && this.#slice.podIps.includes(preferred) ? [preferred, ...this.#slice.podIps] : this.#slice.podIps;
    const ip = candidates.find((c) => !this.#usedIps.has(c));
    if (ip === undefined) throw new RangeError(`node ${this.#opts.name} has no free pod address`);
    this.#usedIps.add(ip);
    return ip;
  }

  #podApi(): PodApi {
    const core = this.#core;
    return {
      readSecret: (namespace, name) => orUndefined(core.readNamespacedSecret({ namespace, name })),
      readConfigMap: (namespace, name) => orUndefined(core.readNamespacedConfigMap({ namespace, name })),
      readPersistentVolumeClaim: (namespace, name) => orUndefined(core.readNamespacedPersistentVolumeClaim({ namespace, name })),
      readPersistentVolume: (name) => orUndefined(core.readPersistentVolume({ name })),
      requestServiceAccountToken: async (pod, audience, expirationSeconds) => {
        const meta = pod.metadata ?? {};
        const tr = await core.createNamespacedServiceAccountToken({
          namespace: meta.namespace ?? 'default',
          name: pod.spec?.serviceAccountName ?? 'default',
          body: {
            spec: {
              audiences: audience === undefined ? [] : [audience],
              expirationSeconds,
              boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: meta.name, uid: meta.uid },
            },
          },
        });
        return tr.status?.token ?? '';
      },
      patchPodStatus: async (namespace: string, name: string, uid: string, status: V1PodStatus) => {
        // The uid makes the API server refuse (409) a write meant for an earlier pod of the same name.
        await ignoreGone(core.patchNamespacedPodStatus({ namespace, name, body: { metadata: { uid }, status } }, mergePatch));
      },
      deletePod: async (namespace, name, uid) => {
        // The grace period goes in the body: the query parameter alone did not shorten a running deletion.
        await ignoreGone(core.deleteNamespacedPod({ namespace, name, body: { gracePeriodSeconds: 0, preconditions: { uid } } }));
      },
    };
  }

  #reconcile(pod: V1Pod): void {
    const meta = pod.metadata ?? {};
    const uid = meta.uid ?? '';
    const runner = this.#runners.get(uid);
    const deleting = meta.deletionTimestamp !== undefined;
    if (runner !== undefined) {
      runner.update(pod);
      if (deleting && !runner.terminating) this.#terminate(runner, meta.deletionGracePeriodSeconds ?? 30, true);
      return;
    }
    if (deleting) {
      // Nothing runs for it here (finished, or never started): finish the deletion.
      this.#podApi().deletePod(meta.namespace ?? '', meta.name ?? '', uid).catch(() => undefined);
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return;
    const created = new PodRunner({
      log: this.#log, api: this.#podApi(), nodeName: this.#opts.name, nodeIndex: this.#opts.index,
      nodeIp: this.#slice.nodeIp, images: this.#opts.images, podsDir: path.join(this.#opts.stateDir, 'pods'),
      allocateIp: (preferred) => this.#allocateIp(preferred),
      releaseIp: (ip) => this.#usedIps.delete(ip),
      storageView: this.#opts.storageView,
      devices: this.#devices,
      devicePluginDir: this.devicePluginDir,
    }, pod);
    this.#runners.set(uid, created);
    created.start();
  }

  #forget(pod: V1Pod): void {
    const runner = this.#runners.get(pod.metadata?.uid ?? '');
    if (runner !== undefined) this.#terminate(runner, 0, false);
  }

  #terminate(runner: PodRunner, gracePeriodSeconds: number, removeObject: boolean): void {
    runner.terminate(gracePeriodSeconds, removeObject)
      .catch((err: unknown) => { this.#log.warn({ err, uid: runner.uid }, 'pod termination failed'); })
      .finally(() => this.#runners.delete(runner.uid))
      .catch(() => undefined);
  }

  /** Node shutdown: stops heartbeats and every pod (short grace), keeps API objects. */
  async shutdown(graceSeconds: number): Promise<void> {
    this.#abort.abort();
    await this.#informer?.stop();
    await Promise.all([...this.#runners.values()].map((r) => r.terminate(graceSeconds, false).catch(() => undefined)));
    await this.#devices.stop();
  }
}

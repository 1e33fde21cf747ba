// The node agent's device plugins against the node simulator's kubelet side, with the
// real API server and kube-scheduler: a throwaway node whose simulator runs only the
// kubelet side (--device-plugin=external) and a node agent process registering on its
// kubelet.sock. The units appear in the Node's capacity and allocatable; a pod that
// requests devices.keyvirt.io/kvm is scheduled by them and, unprivileged, opens /dev/kvm
// (its only way to get it: a pod without the request has no /dev/kvm); after the
// kubelet restarts (kubelet.sock created anew, the directory emptied) the agent
// registers again and a new pod gets the device again.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { KVM_RESOURCE, TUN_RESOURCE } from '../../operator/src/node-agent/device-plugin/resource-names.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const UNITS = 8;

const NodeJson = z.object({
  status: z.object({ capacity: z.record(z.string(), z.string()).default({}), allocatable: z.record(z.string(), z.string()).default({}) }).default({ capacity: {}, allocatable: {} }),
});
const PodJson = z.object({
  status: z.object({
    phase: z.string().optional(),
    containerStatuses: z.array(z.object({ state: z.object({ terminated: z.object({ exitCode: z.number() }).optional() }).optional() })).optional(),
  }).optional(),
});

void describe('device plugins through the kubelet side of a simulated node', { timeout: 6 * 60_000 }, () => {
  let cluster: TestCluster;
  let nodeName = '';
  let agent: ChildProcess | undefined;
  let agentOutput = '';
  const ns = `kv-devices-${randomBytes(3).toString('hex')}`;
  const hasKvm = fs.existsSync('/dev/kvm');

  const node = (): z.infer<typeof NodeJson> => NodeJson.parse(JSON.parse(cluster.kubectl(['get', 'node', nodeName, '-o', 'json'])));

  function startAgent(): ChildProcess {
    const child = spawn(process.execPath, [path.join(repoRoot, 'operator/src/node-agent/main.ts')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        KUBECONFIG: cluster.kubeconfig,
        NODE_NAME: nodeName,
        KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: '3600',
        KEYVIRT_DEVICE_PLUGIN_DIR: path.join(cluster.layout.nodesDir, nodeName, 'device-plugins'),
        KEYVIRT_DEVICE_PLUGIN_UNITS: String(UNITS),
        KEYVIRT_LOG_LEVEL: 'info',
      },
    });
    const collect = (chunk: Buffer): void => {
      agentOutput += chunk.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    return child;
  }

  /** Runs `script` under the launcher's securityContext (no capabilities, no escalation, read-only root) until it ends; its exit code. */
  async function runPod(name: string, script: string, resources: Record<string, string>): Promise<number> {
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        restartPolicy: 'Never',
        nodeSelector: { 'kubernetes.io/hostname': nodeName },
        tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
        securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{
          name: 'probe',
          image: 'keyvirt/host',
          command: ['/bin/sh', '-c', script],
          securityContext: { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: Object.keys(resources).length === 0 ? {} : { requests: resources, limits: resources },
        }],
      },
    }));
    return eventually(`pod ${name} finished`, () => {
      const pod = PodJson.parse(JSON.parse(cluster.kubectl(['get', 'pod', '-n', ns, name, '-o', 'json'])));
      const phase = pod.status?.phase;
      if (phase !== 'Succeeded' && phase !== 'Failed') return undefined;
      return pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode ?? -1;
    }, 90_000);
  }

  const OPENS_KVM = '[ -c /dev/kvm ] || exit 3; exec 3<>/dev/kvm || exit 4; exit 0';

  before(async () => {
    cluster = await ensureCluster();
    cluster.kubectl(['create', 'namespace', ns]);
    nodeName = (await cluster.createNode('kv-devices', { devicePlugin: 'external' })).name;
  });

  after(async () => {
    const child = agent;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    cluster.kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
    if (nodeName !== '') await cluster.deleteNode(nodeName);
  });

  void it('a node without a plugin advertises no device, and a pod there has no /dev/kvm', async () => {
    const status = node().status;
    assert.equal(status.capacity[KVM_RESOURCE], undefined);
    assert.equal(await runPod('no-plugin', '[ ! -e /dev/kvm ] && [ ! -e /dev/net/tun ]', {}), 0);
  });

  void it('registers, and the units appear in the Node status in the API server', { skip: !hasKvm && 'this host has no /dev/kvm' }, async () => {
    agent = startAgent();
    // The plugin registers one resource after the other: the Node shows them one status write apart.
    const resources = fs.existsSync('/dev/net/tun') ? [KVM_RESOURCE, TUN_RESOURCE] : [KVM_RESOURCE];
    const status = await eventually('device units on the Node', () => {
      const s = node().status;
      return resources.every((r) => s.allocatable[r] === String(UNITS)) ? s : undefined;
    }, 60_000);
    for (const r of resources) assert.equal(status.capacity[r], String(UNITS), r);
    // The agent logs a registration once the kubelet's answer reaches it; the kubelet side
    // may write the Node first. The log reaches this process on its event loop, which the
    // synchronous kubectl calls above hold: wait for it rather than read what has arrived.
    await eventually('the agent to log its registration', () => (/registered with the kubelet/.test(agentOutput) ? true : undefined), 10_000);
  });

  void it('a pod requesting devices.keyvirt.io/kvm opens /dev/kvm without privileges; one without the request has none', { skip: !hasKvm && 'this host has no /dev/kvm' }, async () => {
    assert.equal(await runPod('with-kvm', OPENS_KVM, { [KVM_RESOURCE]: '1' }), 0);
    assert.equal(await runPod('without-kvm', '[ ! -e /dev/kvm ]', {}), 0);
  });

  void it('more units than the node advertises stay unscheduled', { skip: !hasKvm && 'this host has no /dev/kvm' }, async () => {
    const name = 'too-many';
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        restartPolicy: 'Never',
        nodeSelector: { 'kubernetes.io/hostname': nodeName },
        tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
        containers: [{ name: 'probe', image: 'keyvirt/host', command: ['/bin/true'], resources: { limits: { [KVM_RESOURCE]: String(UNITS + 1) } } }],
      },
    }));
    const message = await eventually('the scheduler to refuse it', () => {
      const out = cluster.kubectl(['get', 'pod', '-n', ns, name, '-o', 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].message}']);
      return out.includes(`Insufficient ${KVM_RESOURCE}`) ? out : undefined;
    }, 60_000);
    assert.match(message, /Insufficient devices\.keyvirt\.io\/kvm/);
    cluster.kubectl(['delete', 'pod', '-n', ns, name, '--wait=false']);
  });

  void it('registers again after the kubelet restarts, and pods get the device again', { skip: !hasKvm && 'this host has no /dev/kvm' }, async () => {
    const before = agentOutput.split('registered with the kubelet').length;
    await cluster.faults.crash(nodeName);
    await cluster.faults.restart(nodeName, { devicePlugin: 'external' });
    await eventually('a second registration', () => (agentOutput.split('registered with the kubelet').length > before ? true : undefined), 60_000);
    assert.match(agentOutput, /kubelet socket changed; registering again|plugin socket removed; registering again/);
    assert.equal(await runPod('after-restart', OPENS_KVM, { [KVM_RESOURCE]: '1' }), 0);
  });
});

// The node agent's device plugins against a real kubelet (the local cluster's real nodes:
// kubelet + containerd + runc). The agent registers on the node's kubelet.sock, the
// kubelet puts the units in the Node's capacity, and an unprivileged container that
// requests devices.keyvirt.io/kvm opens /dev/kvm; the same container given /dev/kvm as a
// hostPath character device (how launcher pods got it before) is refused by the device
// cgroup, and one with neither has no /dev/kvm at all.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { KVM_RESOURCE } from '../../operator/src/node-agent/device-plugin/resource-names.ts';
import { eventually } from '../support/cluster.ts';
import { busyboxImage, ensureRealNodes, realNodeToleration, type RealNode, type RealNodes } from '../support/real-nodes.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const UNITS = 4;
const hasKvm = fs.existsSync('/dev/kvm');

const NodeJson = z.object({
  status: z.object({ capacity: z.record(z.string(), z.string()).default({}), allocatable: z.record(z.string(), z.string()).default({}) }),
});
const PodJson = z.object({
  status: z.object({
    phase: z.string().optional(),
    containerStatuses: z.array(z.object({ state: z.object({ terminated: z.object({ exitCode: z.number() }).optional() }).optional() })).optional(),
  }).optional(),
});

void describe('device plugins on a real kubelet', { timeout: 10 * 60_000, skip: !hasKvm && 'this host has no /dev/kvm' }, () => {
  let real: RealNodes;
  let node: RealNode;
  let image = '';
  let agent: ChildProcess | undefined;
  let agentOutput = '';
  const ns = `kv-real-devices-${randomBytes(3).toString('hex')}`;

  const kubectl = (args: readonly string[], input?: string): string => real.cluster.kubectl(args, input);

  /** Runs `script` as root without capabilities, escalation or a writable root; its exit code and log. */
  async function runPod(name: string, script: string, extra: { resources?: Record<string, string>; hostPathKvm?: boolean }): Promise<{ code: number; log: string }> {
    const resources = extra.resources ?? {};
    kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns },
      spec: {
        restartPolicy: 'Never',
        automountServiceAccountToken: false,
        nodeSelector: { 'kubernetes.io/hostname': node.name },
        tolerations: [realNodeToleration],
        securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{
          name: 'probe',
          image,
          imagePullPolicy: 'Never',
          command: ['/bin/sh', '-c', script],
          securityContext: { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: Object.keys(resources).length === 0 ? {} : { requests: resources, limits: resources },
          ...(extra.hostPathKvm === true ? { volumeMounts: [{ name: 'kvm', mountPath: '/dev/kvm' }] } : {}),
        }],
        ...(extra.hostPathKvm === true ? { volumes: [{ name: 'kvm', hostPath: { path: '/dev/kvm', type: 'CharDevice' } }] } : {}),
      },
    }));
    const code = await eventually(`pod ${name} finished`, () => {
      const pod = PodJson.parse(JSON.parse(kubectl(['get', 'pod', '-n', ns, name, '-o', 'json'])));
      const phase = pod.status?.phase;
      if (phase !== 'Succeeded' && phase !== 'Failed') return undefined;
      return pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode ?? -1;
    }, 120_000);
    return { code, log: kubectl(['logs', '-n', ns, name]) };
  }

  const OPEN_KVM = '[ -c /dev/kvm ] || { echo no-device; exit 3; }; exec 3<>/dev/kvm || exit 4; echo opened';

  before(async () => {
    const archive = busyboxImage();
    real = await ensureRealNodes([archive]);
    image = archive.ref;
    const first = real.nodes[0];
    if (first === undefined) throw new Error('no real node');
    node = first;
    kubectl(['create', 'namespace', ns]);
    agent = spawn(process.execPath, [path.join(repoRoot, 'operator/src/node-agent/main.ts')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        KUBECONFIG: real.cluster.kubeconfig,
        NODE_NAME: node.name,
        KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: '3600',
        KEYVIRT_DEVICE_PLUGIN_DIR: node.devicePluginDir,
        KEYVIRT_DEVICE_PLUGIN_UNITS: String(UNITS),
        KEYVIRT_LOG_LEVEL: 'info',
      },
    });
    const collect = (chunk: Buffer): void => {
      agentOutput += chunk.toString();
    };
    agent.stdout?.on('data', collect);
    agent.stderr?.on('data', collect);
  });

  after(async () => {
    const child = agent;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    if (real !== undefined) kubectl(['delete', 'namespace', ns, '--wait=false', '--ignore-not-found']);
  });

  void it('the kubelet accepts the registration and advertises the units', async () => {
    await eventually('devices.keyvirt.io/kvm on the real Node', () => {
      const status = NodeJson.parse(JSON.parse(kubectl(['get', 'node', node.name, '-o', 'json']))).status;
      return status.allocatable[KVM_RESOURCE] === String(UNITS) && status.capacity[KVM_RESOURCE] === String(UNITS) ? true : undefined;
    }, 90_000);
    assert.match(agentOutput, /registered with the kubelet/);
    assert.match(agentOutput, /kubelet watching the units/);
  });

  void it('an unprivileged container requesting devices.keyvirt.io/kvm opens /dev/kvm', async () => {
    const result = await runPod('with-plugin', OPEN_KVM, { resources: { [KVM_RESOURCE]: '1' } });
    assert.equal(result.code, 0, result.log);
    assert.match(result.log, /opened/);
    assert.doesNotMatch(result.log, /Operation not permitted/);
  });

  void it('without the request there is no /dev/kvm; as a hostPath the device cgroup refuses it', async () => {
    const none = await runPod('without', OPEN_KVM, {});
    assert.equal(none.code, 3, none.log);
    const hostPath = await runPod('host-path', OPEN_KVM, { hostPathKvm: true });
    // A failed redirection of `exec` ends the shell itself (busybox: status 1).
    assert.notEqual(hostPath.code, 0, hostPath.log);
    assert.match(hostPath.log, /can't create \/dev\/kvm: Operation not permitted/);
  });
});

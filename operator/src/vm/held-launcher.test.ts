import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { LauncherConfigSchema } from '@keyvirt/launcher/api';
import { z } from 'zod';
import { heldByNodeAgent, launcherConfig, renderLauncherPod, type LauncherPodInput, type LauncherSettings } from './launcher-pod.ts';
import { memoryOverheadBytes } from './launcher-resources.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: {
    runStrategy: 'Always',
    terminationGracePeriodSeconds: 60,
    template: { memory: { size: '1Gi' }, interfaces: [{ name: 'default', binding: 'masquerade' }] },
  },
});

const settings: LauncherSettings = { image: 'keyvirt/launcher:0.1.0', args: ['--x'], imagePullPolicy: 'IfNotPresent', allowEmulation: true, launcherHost: 'node-agent' };

function input(over: Partial<LauncherPodInput> = {}): LauncherPodInput {
  return { vm, settings, affinity: {}, devices: [], disks: [], ...over };
}

const PodShape = z.object({
  metadata: z.object({ labels: z.record(z.string(), z.string()), annotations: z.record(z.string(), z.string()) }),
  spec: z.object({
    containers: z.array(z.object({
      command: z.array(z.string()).optional(),
      args: z.array(z.string()).optional(),
      env: z.array(z.object({ name: z.string(), value: z.string().optional() })).optional(),
      resources: z.object({ requests: z.record(z.string(), z.string()) }),
      volumeMounts: z.array(z.object({ mountPath: z.string(), subPath: z.string().optional() })).optional(),
      securityContext: z.object({ capabilities: z.object({ drop: z.array(z.string()), add: z.array(z.string()).optional() }), readOnlyRootFilesystem: z.boolean() }),
    })),
  }),
});
const lease = { domain: { domain: 'shared', source: { hostPath: { path: '/var/lib/keyvirt/shared', type: 'Directory' } }, leaseDir: 'leases/prod/web-1' }, nodeFenced: false };

void describe('launcher pods held by the node agent (ADR 0134)', () => {
  void it('runs the pod script as PID 1 holding QEMU, labelled for the agent, its configuration saying so', () => {
    const pod = PodShape.parse(renderLauncherPod(input(), 'h'));
    const c = pod.spec.containers[0];
    assert.deepEqual(c?.command, ['/bin/bash', '/opt/keyvirt/launcher/pod/vm-pod.sh']);
    assert.equal(c?.args, undefined, 'the launcher\'s own arguments are not the script\'s');
    assert.deepEqual(c?.env, [{ name: 'KEYVIRT_STATE_DIR', value: '/var/run/keyvirt/state' }, { name: 'KEYVIRT_GRACE_SECONDS', value: '70' }]);
    assert.equal(pod.metadata.labels['keyvirt.io/launcher-host'], 'node-agent');
    assert.deepEqual(c?.securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(c?.securityContext.readOnlyRootFilesystem, true);
    assert.equal(LauncherConfigSchema.parse(launcherConfig(input())).qemu.host, 'pod');
  });

  void it('requests the script\'s memory in place of a launcher\'s, and says so in its overhead annotation', () => {
    const pod = PodShape.parse(renderLauncherPod(input(), 'h'));
    const held = memoryOverheadBytes(vm.spec.template, true, true);
    assert.equal(held, memoryOverheadBytes(vm.spec.template, true) - 32 * 1024 * 1024);
    assert.equal(pod.metadata.annotations['keyvirt.io/memory-overhead-bytes'], String(held));
    assert.equal(pod.spec.containers[0]?.resources.requests.memory, `${Math.ceil((1024 * 1024 * 1024 + held) / 1024 / 1024)}Mi`);
  });

  void it('keeps the launcher in the pod for what the agent cannot do yet: a migration target, a bridge NIC, the pod network', () => {
    assert.equal(heldByNodeAgent(input()), true);
    assert.equal(heldByNodeAgent(input({ lease })), true, 'an HA VM is held: the agent holds its lease as the pod (ADR 0136)');
    assert.equal(heldByNodeAgent(input({ migrationTarget: { podName: 'target', migrationUid: 'm' } })), false);
    const bridged = VirtualMachine.parse({ ...vm, spec: { ...vm.spec, template: { ...vm.spec.template, interfaces: [{ name: 'default', binding: 'bridge' }] } } });
    assert.equal(heldByNodeAgent(input({ vm: bridged })), false);
    assert.equal(heldByNodeAgent(input({ settings: { ...settings, podNetwork: 'node-agent' } })), false);
    const target = input({ migrationTarget: { podName: 'target', migrationUid: 'm' } });
    const pod = PodShape.parse(renderLauncherPod(target, 'h'));
    assert.deepEqual(pod.spec.containers[0]?.args, ['--x', '--config', '/var/run/keyvirt/launcher/config.json']);
    assert.equal(pod.metadata.labels['keyvirt.io/launcher-host'], undefined);
    assert.equal(LauncherConfigSchema.parse(launcherConfig(target)).qemu.host, 'launcher');
  });

  void it('holds an HA VM: the pod mounts its lease directory, the agent holds the lease as the pod (ADR 0136)', () => {
    const pod = PodShape.parse(renderLauncherPod(input({ lease }), 'h'));
    assert.equal(pod.metadata.labels['keyvirt.io/launcher-host'], 'node-agent');
    assert.equal(pod.spec.containers[0]?.command?.[1], '/opt/keyvirt/launcher/pod/vm-pod.sh');
    assert.ok(pod.spec.containers[0]?.volumeMounts?.some((m) => m.mountPath === '/var/lib/keyvirt/lease' && m.subPath === 'leases/prod/web-1'));
    const config = LauncherConfigSchema.parse(launcherConfig(input({ lease })));
    assert.equal(config.qemu.host, 'pod');
    assert.equal(config.lease?.path, '/var/lib/keyvirt/lease/lease');
    assert.equal(config.lease?.agentRestartGraceMs, 0, 'no parting renewal unless configured');
  });

  void it("states the agent-restart grace in a held HA VM's lease only (ADR 0138)", () => {
    const graced = { ...settings, agentRestartGraceSeconds: 30 };
    const held = LauncherConfigSchema.parse(launcherConfig(input({ lease, settings: graced })));
    assert.equal(held.lease?.agentRestartGraceMs, 30_000);
    const inPod = LauncherConfigSchema.parse(launcherConfig(input({ lease, settings: { ...graced, launcherHost: 'pod' } })));
    assert.equal(inPod.lease?.agentRestartGraceMs, 0, 'a launcher in its pod never outlives its QEMU: nothing to part from');
    const target = LauncherConfigSchema.parse(launcherConfig(input({ lease, settings: graced, migrationTarget: { podName: 'target', migrationUid: 'm' } })));
    assert.equal(target.lease?.agentRestartGraceMs, 0);
  });

  void it('is never held unless the operator is configured so', () => {
    const inPod = { ...settings, launcherHost: 'pod' as const };
    assert.equal(heldByNodeAgent(input({ settings: inPod })), false);
    assert.equal(heldByNodeAgent(input({ settings: { ...settings, launcherHost: undefined } })), false);
  });
});

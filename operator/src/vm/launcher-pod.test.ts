import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, parseQuantity } from '@keyvirt/crds';
import { LauncherConfigSchema } from '@keyvirt/launcher/api';
import { z } from 'zod';
import { configHash, launcherConfig, renderLauncherPod, renderLauncherSecret, type LauncherPodInput } from './launcher-pod.ts';
import { memoryOverheadBytes } from './launcher-resources.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: {
    runStrategy: 'Always',
    template: {
      cpu: { cores: 2 },
      memory: { size: '1Gi' },
      disks: [
        { name: 'root', bootOrder: 1, storageDomain: { name: 'local-sd', size: '1Gi' } },
        { name: 'data', persistentVolumeClaim: { claimName: 'web-1-data' } },
      ],
    },
  },
});

const podShape = z.object({
  metadata: z.object({ name: z.string(), ownerReferences: z.array(z.object({ uid: z.string(), controller: z.boolean() })) }),
  spec: z.object({
    automountServiceAccountToken: z.boolean(),
    restartPolicy: z.string(),
    affinity: z.unknown(),
    containers: z.array(
      z.object({
        image: z.string(),
        args: z.array(z.string()),
        resources: z.object({ requests: z.record(z.string(), z.string()) }),
        volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string() })),
      }),
    ),
    volumes: z.array(z.looseObject({ name: z.string() })),
  }),
});

function input(over: Partial<LauncherPodInput> = {}): LauncherPodInput {
  return {
    vm,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } },
    nodeHasKvm: false,
    disks: [
      { name: 'root', source: { hostPath: { path: '/srv/sd', type: 'Directory' } }, imageFile: 'images/prod/web-1/root.qcow2', format: 'qcow2', readOnly: false },
      { name: 'data', source: { persistentVolumeClaim: { claimName: 'web-1-data' } }, imageFile: 'disk.img', format: 'raw', readOnly: false },
    ],
    ...over,
  };
}

void describe('launcher pod', () => {
  void it('has a deterministic name, a controller owner reference and no service-account token', () => {
    const pod = podShape.parse(renderLauncherPod(input(), 'h'));
    assert.equal(pod.metadata.name, 'launcher-web-1');
    assert.deepEqual(pod.metadata.ownerReferences.map((r) => [r.uid, r.controller]), [['vm-uid', true]]);
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.equal(pod.spec.restartPolicy, 'Never');
    assert.deepEqual(pod.spec.affinity, input().affinity);
  });

  void it('requests the guest memory plus the launcher/QEMU overhead, and runs the launcher with its config', () => {
    const pod = podShape.parse(renderLauncherPod(input(), 'h'));
    const container = pod.spec.containers[0];
    assert.ok(container);
    const memory = parseQuantity(container.resources.requests.memory ?? '');
    const expected = 1024 ** 3 + memoryOverheadBytes(vm.spec.template, true);
    assert.ok(memory !== undefined && memory >= expected && memory - expected < 1024 * 1024, `memory request ${container.resources.requests.memory}`);
    assert.equal(container.resources.requests.cpu, '300m');
    assert.deepEqual(container.args, ['--config', '/var/run/keyvirt/launcher/config.json']);
  });

  void it('mounts each disk volume and /dev/kvm only on a KVM node', () => {
    const plain = podShape.parse(renderLauncherPod(input(), 'h'));
    assert.deepEqual(plain.spec.volumes.map((v) => v.name), ['launcher-config', 'state', 'disk-root', 'disk-data']);
    const kvm = podShape.parse(renderLauncherPod(input({ nodeHasKvm: true }), 'h'));
    assert.ok(kvm.spec.volumes.some((v) => v.name === 'kvm'));
    assert.ok(kvm.spec.containers[0]?.volumeMounts.some((m) => m.mountPath === '/dev/kvm'));
  });

  void it('mounts a direct kernel boot read-only and passes it to the launcher', () => {
    const boot = { kernel: '/guest/vmlinux', initrd: '/guest/initramfs.cpio.gz', cmdline: 'console=ttyS0' };
    const pod = podShape.parse(renderLauncherPod(input({ kernelBoot: boot }), 'h'));
    assert.ok(pod.spec.containers[0]?.volumeMounts.some((m) => m.mountPath === '/guest'));
    assert.deepEqual(launcherConfig(input({ kernelBoot: boot })).directKernelBoot, boot);
  });

  void it('writes a configuration the launcher accepts, with each disk at its mount path', () => {
    const config = LauncherConfigSchema.parse(launcherConfig(input()));
    assert.deepEqual(config.disks, {
      root: { path: '/var/run/keyvirt/disks/root/images/prod/web-1/root.qcow2', format: 'qcow2' },
      data: { path: '/var/run/keyvirt/disks/data/disk.img', format: 'raw' },
    });
    assert.equal(config.allowEmulation, true);
    assert.equal(configHash(launcherConfig(input())), configHash(launcherConfig(input())));
    const secret = z.object({ data: z.object({ token: z.string(), 'config.json': z.string() }) }).parse(renderLauncherSecret(vm, 'tok', launcherConfig(input())));
    assert.equal(Buffer.from(secret.data.token, 'base64').toString(), 'tok');
  });
});

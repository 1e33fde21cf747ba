import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { z } from 'zod';
import { copiedVmLabels, renderLauncherPod, type LauncherPodInput } from './launcher-pod.ts';

function vmWith(labels: Record<string, string> | undefined): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', ...(labels === undefined ? {} : { labels }) },
    spec: {
      runStrategy: 'Always',
      template: { cpu: { cores: 1 }, memory: { size: '256Mi' }, disks: [{ name: 'data', persistentVolumeClaim: { claimName: 'web-1-data' } }] },
    },
  });
}

function input(vm: VirtualMachine, over: Partial<LauncherPodInput> = {}): LauncherPodInput {
  return {
    vm,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } },
    devices: [],
    disks: [{
      name: 'data', source: { persistentVolumeClaim: { claimName: 'web-1-data' } }, format: 'raw', readOnly: false,
      path: '/var/run/keyvirt/disks/data/disk.img', mounts: [{ mountPath: '/var/run/keyvirt/disks/data', readOnly: false }],
    }],
    ...over,
  };
}

const podLabels = z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()) }) });

void describe('launcher pod labels copied from the VM', () => {
  const table: { name: string; vmLabels: Record<string, string> | undefined; copied: Record<string, string> }[] = [
    { name: 'no labels', vmLabels: undefined, copied: {} },
    { name: 'plain and prefixed keys', vmLabels: { app: 'web', 'example.com/tier': 'front' }, copied: { app: 'web', 'example.com/tier': 'front' } },
    { name: 'keys under keyvirt.io are left out', vmLabels: { 'keyvirt.io/migration-target': 'x', 'keyvirt.io/vm': 'other', app: 'web' }, copied: { app: 'web' } },
    { name: 'subdomains of keyvirt.io are left out', vmLabels: { 'ha.keyvirt.io/x': 'y', 'notkeyvirt.io/x': 'y' }, copied: { 'notkeyvirt.io/x': 'y' } },
    {
      name: "the operator's app.kubernetes.io keys are left out, others kept",
      vmLabels: { 'app.kubernetes.io/component': 'launcher', 'app.kubernetes.io/managed-by': 'keyvirt-operator', 'app.kubernetes.io/name': 'web' },
      copied: { 'app.kubernetes.io/name': 'web' },
    },
  ];
  for (const row of table) {
    void it(row.name, () => {
      assert.deepEqual(copiedVmLabels(vmWith(row.vmLabels)), row.copied);
    });
  }

  void it('the launcher pod carries the copied labels beside its own, which a VM label cannot override', () => {
    const vm = vmWith({ app: 'web', 'keyvirt.io/vm': 'other', 'app.kubernetes.io/managed-by': 'me' });
    const { labels } = podLabels.parse(renderLauncherPod(input(vm), 'h')).metadata;
    assert.equal(labels.app, 'web');
    assert.equal(labels['keyvirt.io/vm'], 'web-1');
    assert.equal(labels['app.kubernetes.io/managed-by'], 'keyvirt-operator');
  });

  void it('a migration target carries them too, so that a Service follows the VM to its new pod', () => {
    const vm = vmWith({ app: 'web' });
    const pod = renderLauncherPod(input(vm, { migrationTarget: { podName: 'launcher-web-1-t', migrationUid: 'mig-uid' } }), 'h');
    const { labels } = podLabels.parse(pod).metadata;
    assert.equal(labels.app, 'web');
    assert.equal(labels['keyvirt.io/migration-target'], 'mig-uid');
  });

  void it('every launcher pod, a migration target too, carries the eviction strategy of its VM, which a VM label cannot forge', () => {
    const vm = vmWith({ 'keyvirt.io/eviction-strategy': 'LiveMigrate' });
    const shutdown = VirtualMachine.parse({ ...vm, spec: { ...vm.spec, evictionStrategy: 'Shutdown' } });
    assert.equal(podLabels.parse(renderLauncherPod(input(shutdown), 'h')).metadata.labels['keyvirt.io/eviction-strategy'], 'Shutdown');
    const target = renderLauncherPod(input(vm, { migrationTarget: { podName: 'launcher-web-1-t', migrationUid: 'mig-uid' } }), 'h');
    assert.equal(podLabels.parse(target).metadata.labels['keyvirt.io/eviction-strategy'], 'LiveMigrate');
  });
});

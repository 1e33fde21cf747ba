import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { launcherResources, memoryOverheadBytes } from './launcher-resources.ts';

const MiB = 1024 * 1024;

function template(memory: string, cores: number): VirtualMachine['spec']['template'] {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'vm', namespace: 'ns', uid: 'uid' },
    spec: { runStrategy: 'Always', template: { cpu: { cores }, memory: { size: memory }, disks: [{ name: 'root', persistentVolumeClaim: { claimName: 'root' } }] } },
  }).spec.template;
}

describe('launcher pod memory overhead', () => {
  // launcher 40 MiB (charged beside QEMU in a launcher pod on a real node: apply-to-running, ADR 0116) + QEMU 64 MiB + guest/512 + 8 MiB per vCPU (+ 128 MiB TCG cache)
  const cases: { name: string; memory: string; cores: number; mayEmulate: boolean; wantMiB: number }[] = [
    { name: '256 MiB, 1 vCPU, KVM only', memory: '256Mi', cores: 1, mayEmulate: false, wantMiB: 40 + 64 + 0.5 + 8 },
    { name: '256 MiB, 1 vCPU, may emulate', memory: '256Mi', cores: 1, mayEmulate: true, wantMiB: 40 + 64 + 0.5 + 8 + 128 },
    { name: '1 GiB, 2 vCPUs, may emulate', memory: '1Gi', cores: 2, mayEmulate: true, wantMiB: 40 + 64 + 2 + 16 + 128 },
    { name: '8 GiB, 4 vCPUs, KVM only', memory: '8Gi', cores: 4, mayEmulate: false, wantMiB: 40 + 64 + 16 + 32 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(memoryOverheadBytes(template(c.memory, c.cores), c.mayEmulate), c.wantMiB * MiB);
    });
  }

  it('requests the guest plus the overhead and states the overhead', () => {
    const t = template('256Mi', 1);
    const r = launcherResources(t, true);
    assert.equal(r.overheadBytes, (40 + 64 + 0.5 + 8 + 128) * MiB);
    assert.equal(r.requests.memory, '497Mi', '256 MiB guest + 240.5 MiB overhead, rounded up');
  });
});

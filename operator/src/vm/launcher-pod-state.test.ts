// The launcher pod's state volume is size-limited: a guest flooding its serial console
// (rotated by the launcher) or a runaway launcher cannot fill the node's disk (ADR 0101).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { z } from 'zod';
import { renderLauncherPod, STATE_SIZE_LIMIT } from './launcher-pod.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: { runStrategy: 'Always', template: { memory: { size: '256Mi' } } },
});

const volumes = z.object({ spec: z.object({ volumes: z.array(z.looseObject({ name: z.string(), emptyDir: z.object({ sizeLimit: z.string() }).optional() })) }) });

void describe('launcher pod state volume', () => {
  void it('is an emptyDir with a size limit', () => {
    const pod = volumes.parse(
      renderLauncherPod(
        {
          vm,
          settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
          affinity: {},
          devices: [],
          disks: [],
        },
        'hash',
      ),
    );
    const state = pod.spec.volumes.find((v) => v.name === 'state');
    assert.equal(state?.emptyDir?.sizeLimit, STATE_SIZE_LIMIT);
    assert.equal(STATE_SIZE_LIMIT, '64Mi');
  });
});

// A restarted operator (or a new leader) reads every VM's status from the API server, in
// the schema's key order; the status it computes has its own key order. Equal statuses
// must compare equal, or every VM's status is rewritten once after each takeover.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type VirtualMachineStatus } from '@keyvirt/crds';
import { pino } from 'pino';
import { VmStatusWriter } from './status-writer.ts';

const log = pino({ level: 'silent' });
const events = { record: (): Promise<void> => Promise.resolve() };

void describe('VmStatusWriter after a takeover', () => {
  void it('writes nothing when the cached status equals the computed one in another key order', async () => {
    const computed: VirtualMachineStatus = {
      phase: 'Starting',
      conditions: [{ type: 'Ready', status: 'False', reason: 'Starting', message: 'the launcher is starting', lastTransitionTime: '2026-11-28T22:00:00Z', observedGeneration: 1 }],
    };
    const cached = VirtualMachine.parse({
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachine',
      metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', resourceVersion: '7' },
      spec: { runStrategy: 'Always', template: { memory: { size: '256Mi' } } },
      status: JSON.parse(JSON.stringify(computed)) as unknown,
    });
    assert.notEqual(JSON.stringify(cached.status?.conditions), JSON.stringify(computed.conditions), 'the parsed status has another key order');
    const patches: unknown[] = [];
    const writer = new VmStatusWriter({ patch: (...args: unknown[]) => (patches.push(args), Promise.resolve({ metadata: { resourceVersion: '8' } })) }, events);
    assert.equal(await writer.write(cached, computed, log), false);
    assert.deepEqual(patches, []);
    assert.equal(await writer.write(cached, { ...computed, phase: 'Running' }, log), true, 'a real change is still written');
  });
});

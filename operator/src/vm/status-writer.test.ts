// The VM status writer against a fake status subresource with the API server's
// optimistic concurrency: a write names the resourceVersion it was computed from and
// fails with 409 when the object has moved on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type VirtualMachineStatus } from '@keyvirt/crds';
import { pino } from 'pino';
import type { EventTarget, RecordedEvent } from '../runtime/event-recorder.ts';
import { KubeApiError } from '../runtime/kube-client.ts';
import { VmStatusWriter } from './status-writer.ts';
import { StatusSubresourceFake } from '../runtime/status-subresource-fake.ts';

const log = pino({ level: 'silent' });

/** One VM object on a fake API server: every write bumps resourceVersion; a stale precondition is 409. */
class StatusSubresource extends StatusSubresourceFake<VirtualMachineStatus, VirtualMachine> {
  constructor() {
    super(10);
  }

  override cached(): VirtualMachine {
    return VirtualMachine.parse({
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachine',
      metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', resourceVersion: String(this.resourceVersion) },
      spec: { runStrategy: 'Always', template: { memory: { size: '256Mi' } } },
      ...(this.status === undefined ? {} : { status: this.status }),
    });
  }
}

const events = { record: (): Promise<void> => Promise.resolve() };

void describe('VmStatusWriter', () => {
  void it('guards each write with the version it was computed from, including its own write the cache has not shown yet', async () => {
    const api = new StatusSubresource();
    const writer = new VmStatusWriter(api, events);
    const stale = api.cached();
    assert.equal(await writer.write(stale, { phase: 'Starting' }, log), true);
    // The cache still shows version 10: the next write uses the version the first write answered with.
    assert.equal(await writer.write(stale, { phase: 'Running' }, log), true);
    assert.deepEqual(api.preconditions, ['10', '11']);
    assert.deepEqual(writer.current(stale), { phase: 'Running' });
    // Once the cache shows the write, the cache is the source again.
    assert.equal(await writer.write(api.cached(), { phase: 'Running' }, log), false);
  });

  void it('a write computed from a view that another writer has moved past fails with 409 and is forgotten', async () => {
    const api = new StatusSubresource();
    const writer = new VmStatusWriter(api, events);
    const seen = api.cached();
    // Another operator (or a user's spec change) moves the object on.
    await api.patch('/status', [{ op: 'add', path: '/status', value: { phase: 'Migrating' } }]);
    await assert.rejects(writer.write(seen, { phase: 'Running' }, log), (err: unknown) => err instanceof KubeApiError && err.statusCode === 409);
    assert.deepEqual(api.status, { phase: 'Migrating' }, 'the newer status was not overwritten');
    // Retried from the refreshed cache, it goes through.
    assert.equal(await writer.write(api.cached(), { phase: 'Running' }, log), true);
    assert.deepEqual(api.status, { phase: 'Running' });
  });

  void it('records one event per transition worth telling, none for a launcher pod on its way up', async () => {
    const ready = (reason: string, message: string): VirtualMachineStatus['conditions'] => [{ type: 'Ready', status: 'False', reason, message, lastTransitionTime: '2026-11-28T22:00:00Z' }];
    const steps: { status: VirtualMachineStatus; want: string[] }[] = [
      { status: { phase: 'Scheduling', conditions: ready('DiskNotReady', 'claim data is not bound') }, want: ['Normal Scheduling'] },
      { status: { phase: 'Scheduling', launcherPod: 'launcher-web-1' }, want: [] },
      { status: { phase: 'Starting', launcherPod: 'launcher-web-1', nodeName: 'node-a' }, want: [] },
      { status: { phase: 'Running', launcherPod: 'launcher-web-1', nodeName: 'node-a' }, want: ['Normal Running'] },
      { status: { phase: 'Running', launcherPod: 'launcher-web-1', nodeName: 'node-a', ready: true }, want: [] },
      { status: { phase: 'Failed', conditions: ready('GuestCrashed', 'the guest crashed') }, want: ['Warning Failed'] },
      { status: { phase: 'Failed', conditions: ready('LauncherExited', 'the launcher exited') }, want: ['Warning LauncherExited'] },
      { status: { phase: 'Starting', launcherPod: 'launcher-web-1' }, want: [] },
      { status: { phase: 'Stopping', launcherPod: 'launcher-web-1' }, want: ['Normal Stopping'] },
      { status: { phase: 'Stopped' }, want: ['Normal Stopped'] },
    ];
    const api = new StatusSubresource();
    let recorded: RecordedEvent[] = [];
    const writer = new VmStatusWriter(api, { record: (_t: EventTarget, e: RecordedEvent) => Promise.resolve(void recorded.push(e)) });
    for (const [i, step] of steps.entries()) {
      recorded = [];
      await writer.write(api.cached(), step.status, log);
      assert.deepEqual(recorded.map((e) => `${e.type} ${e.reason}`), step.want, `step ${i}: ${step.status.phase ?? ''}`);
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { EventRecorder, MAX_EVENTS_IN_FLIGHT } from './event-recorder.ts';

const target = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: 'vm', namespace: 'ns', uid: 'u' } };
const event = { type: 'Normal' as const, reason: 'LauncherCreated', action: 'Start', note: 'placed' };

/** An API whose create answers only when released. */
function heldClient(): { client: { create(path: string, body: unknown): Promise<unknown> }; bodies: unknown[]; release(): void } {
  const bodies: unknown[] = [];
  const waiting: (() => void)[] = [];
  return {
    bodies,
    client: {
      create: (_path, body) => {
        bodies.push(body);
        return new Promise((resolve) => waiting.push(() => resolve({})));
      },
    },
    release: () => {
      for (const w of waiting.splice(0)) w();
    },
  };
}

describe('EventRecorder', () => {
  it('returns before the write is answered; flush waits for it', async () => {
    const api = heldClient();
    const recorder = new EventRecorder({ client: api.client, controller: 'c', instance: 'i', log: pino({ level: 'silent' }), now: () => 0 });
    await recorder.record(target, event);
    assert.equal(api.bodies.length, 1);
    let flushed = false;
    const flush = recorder.flush().then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(flushed, false);
    api.release();
    await flush;
    assert.equal(flushed, true);
  });

  it(`drops events past ${MAX_EVENTS_IN_FLIGHT} in flight, and records again once they are answered`, async () => {
    const api = heldClient();
    const recorder = new EventRecorder({ client: api.client, controller: 'c', instance: 'i', log: pino({ level: 'silent' }), now: () => 0 });
    for (let i = 0; i < MAX_EVENTS_IN_FLIGHT + 5; i++) await recorder.record(target, event);
    assert.equal(api.bodies.length, MAX_EVENTS_IN_FLIGHT);
    api.release();
    await recorder.flush();
    await recorder.record(target, event);
    assert.equal(api.bodies.length, MAX_EVENTS_IN_FLIGHT + 1);
  });

  it('logs a failed write and never rejects', async () => {
    const recorder = new EventRecorder({
      client: { create: () => Promise.reject(new Error('refused')) },
      controller: 'c',
      instance: 'i',
      log: pino({ level: 'silent' }),
      now: () => 0,
    });
    await recorder.record(target, event);
    await recorder.flush();
  });
});

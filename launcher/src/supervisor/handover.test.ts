// The post-copy fence as a table: which QMP commands may still reach a source QEMU
// whose guest was handed over, and the fenced session that enforces it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import type { MigrationQmp, MigrationQmpEvent } from '../migration/qmp-port.ts';
import { ActionConflictError } from './action-conflict.ts';
import { allowedAfterHandover, assertAllowedAfterHandover, fencedQmp, GuestHandedOverError } from './handover.ts';

const cases: readonly [command: string, allowed: boolean][] = [
  ['cont', false],
  ['system_reset', false],
  ['system_wakeup', false],
  ['system_powerdown', false],
  ['migrate_cancel', false],
  ['migrate-continue', false],
  ['migrate-incoming', false],
  ['migrate', false],
  ['inject-nmi', false],
  ['human-monitor-command', false],
  ['device_add', false],
  ['a-command-qemu-adds-later', false],
  ['query-status', true],
  ['query-migrate', true],
  ['quit', true],
  ['stop', true],
  ['migrate-set-parameters', true],
  ['migrate-start-postcopy', true],
  ['migrate-pause', true],
  ['object-del', true],
];

void describe('post-copy fence', () => {
  for (const [command, allowed] of cases) {
    void it(`${allowed ? 'lets through' : 'refuses'} ${command}`, () => {
      assert.equal(allowedAfterHandover(command), allowed);
      if (allowed) assert.doesNotThrow(() => assertAllowedAfterHandover(true, command));
      else assert.throws(() => assertAllowedAfterHandover(true, command), GuestHandedOverError);
      assert.doesNotThrow(() => assertAllowedAfterHandover(false, command), 'no fence, no refusal');
    });
  }

  void it('is a conflict (HTTP 409) for the lifecycle API', () => {
    assert.ok(new GuestHandedOverError('x') instanceof ActionConflictError);
  });

  void it('a fenced session never forwards a refused command to QEMU', async () => {
    const sent: string[] = [];
    const listeners: ((e: MigrationQmpEvent) => void)[] = [];
    const qmp: MigrationQmp = {
      execute<S extends z.ZodType>(command: string, _args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
        sent.push(command);
        return Promise.resolve(schema.parse(command === 'query-status' ? { running: false, status: 'postmigrate' } : {}));
      },
      on: (_e, l) => listeners.push(l),
      off: () => undefined,
    };
    let fenced = false;
    const guarded = fencedQmp(qmp, () => fenced);
    await guarded.execute('cont', undefined, z.object({}).loose());
    fenced = true;
    await assert.rejects(guarded.execute('cont', undefined, z.object({}).loose()), GuestHandedOverError);
    await assert.rejects(guarded.execute('migrate_cancel', undefined, z.object({}).loose()), GuestHandedOverError);
    const status = await guarded.execute('query-status', undefined, z.object({ running: z.boolean() }).loose());
    assert.equal(status.running, false);
    assert.deepEqual(sent, ['cont', 'query-status'], 'only the command before the fence and the query reached QEMU');
    guarded.on('event', () => undefined);
    assert.equal(listeners.length, 1, 'events pass through');
  });
});

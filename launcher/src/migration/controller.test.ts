// The controller and source driver against a scripted QMP peer (the real thing runs
// in test/migration/): which commands go to QEMU, how phases change, what is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { z } from 'zod';
import { StartMigrationRequestSchema, type StartMigrationRequestInput } from '../api/migration.ts';
import { MigrationConflictError, MigrationController, type MigratableVm } from './controller.ts';
import { podAddress } from './attach.ts';
import type { MigrationQmp, MigrationQmpEvent } from './qmp-port.ts';
import { sampleClientTls, sampleServerTls } from './tls-sample-credentials.ts';

const silent = pino({ level: 'silent' });

/** Answers QMP commands from a script of query-migrate states; records every command. */
class ScriptedQmp implements MigrationQmp {
  readonly calls: { command: string; args: Readonly<Record<string, unknown>> | undefined }[] = [];
  #states: Record<string, unknown>[];
  #listeners = new Set<(e: MigrationQmpEvent) => void>();
  running = true;

  constructor(states: Record<string, unknown>[]) {
    this.#states = states;
  }

  execute<S extends z.ZodType>(command: string, args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
    this.calls.push({ command, args });
    let reply: unknown = {};
    if (command === 'query-status') reply = { running: this.running, status: this.running ? 'running' : 'paused' };
    if (command === 'query-migrate') reply = this.#states.length > 1 ? this.#states.shift() : this.#states[0];
    if (command === 'migrate_cancel') this.#states = [{ status: 'cancelled', ram: { transferred: 0, remaining: 0, total: 0 } }];
    if (command === 'migrate') this.emit('STOP');
    if (command === 'cont') this.running = true;
    return Promise.resolve(schema.parse(reply));
  }

  emit(event: string): void {
    for (const l of this.#listeners) l({ event, timestamp: { seconds: 1000, microseconds: 0 } });
  }

  on(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.add(listener);
  }

  off(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.delete(listener);
  }

  commands(): string[] {
    return this.calls.map((c) => c.command);
  }
}

class FakeVm implements MigratableVm {
  phase = 'Running';
  reason: string | undefined;
  readonly exits: string[] = [];
  readonly powerOffs: string[] = [];
  readonly qmp: ScriptedQmp;
  constructor(qmp: ScriptedQmp) {
    this.qmp = qmp;
  }
  setPhase(phase: string, reason?: string): void {
    this.phase = phase;
    this.reason = reason;
  }
  expectExit(reason: string): void {
    this.exits.push(reason);
  }
  powerOff(reason = 'PoweredOff'): Promise<void> {
    this.powerOffs.push(reason);
    this.phase = 'Stopped';
    return Promise.resolve();
  }
}

const ram = (transferred: number, remaining: number, iteration: number): Record<string, unknown> => ({
  transferred,
  remaining,
  total: 256 * 1024 * 1024,
  'dirty-sync-count': iteration,
  'page-size': 4096,
});

function request(input: Partial<StartMigrationRequestInput> = {}): ReturnType<typeof StartMigrationRequestSchema.parse> {
  return StartMigrationRequestSchema.parse({ target: { host: '10.78.0.2', port: 49152 }, tls: sampleClientTls, ...input });
}

function controller(vm: FakeVm, mode: 'run' | 'migration-target' = 'run'): MigrationController {
  return new MigrationController({ vm, logger: silent, mode, podAddress: '10.78.0.2', pollIntervalMs: 2 });
}

void describe('MigrationController (source)', () => {
  void it('runs the migration with the policy and hands the VM over on success', async () => {
    const qmp = new ScriptedQmp([
      { status: 'setup' },
      { status: 'active', ram: ram(1_000_000, 200_000_000, 1) },
      { status: 'completed', 'total-time': 0, downtime: 0, ram: ram(90_000_000, 0, 3) },
      { status: 'completed', 'total-time': 350, downtime: 21, 'setup-time': 3, ram: ram(95_000_000, 0, 3) },
    ]);
    const vm = new FakeVm(qmp);
    const c = controller(vm);
    const started = c.startOutgoing(request({ migrationId: 'm1', policy: { autoConverge: true, bandwidthBytesPerSecond: 1 << 26 } }));
    assert.equal(started.migrationId, 'm1');
    assert.equal(vm.phase, 'Migrating');
    const result = await c.settled();
    assert.equal(result?.phase, 'Succeeded');
    assert.equal(result.totalTimeMs, 350, 're-queried after QEMU filled the times');
    assert.equal(result.downtimeMs, 21);
    assert.equal(result.transferredBytes, 95_000_000);
    assert.equal(result.sourceStoppedAtMicros, 1_000_000_000);
    assert.deepEqual(vm.exits, ['Migrated']);
    assert.deepEqual(vm.powerOffs, ['Migrated']);
    const caps = qmp.calls.find((c) => c.command === 'migrate-set-capabilities')?.args;
    assert.deepEqual(caps, {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'auto-converge', state: true },
        { capability: 'postcopy-ram', state: false },
        { capability: 'pause-before-switchover', state: false },
      ],
    });
    assert.deepEqual(qmp.calls.find((c) => c.command === 'migrate-set-parameters')?.args, { 'downtime-limit': 100, 'max-bandwidth': 1 << 26, 'max-postcopy-bandwidth': 1 << 26 });
    assert.deepEqual(qmp.calls.find((c) => c.command === 'migrate')?.args, { uri: 'tcp:10.78.0.2:49152' });
  });

  void it('cancels on request and leaves the VM running where it is', async () => {
    const qmp = new ScriptedQmp([{ status: 'active', ram: ram(1_000_000, 200_000_000, 1) }]);
    const vm = new FakeVm(qmp);
    const c = controller(vm);
    c.startOutgoing(request());
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.throws(() => c.startOutgoing(request()), MigrationConflictError);
    c.cancelOutgoing();
    const result = await c.settled();
    assert.equal(result?.phase, 'Cancelled');
    assert.equal(result.reason, 'Cancelled');
    assert.equal(result.sourceRunning, true);
    assert.equal(result.transferredBytes, 1_000_000, 'the last counters survive the reset');
    assert.ok(qmp.commands().includes('migrate_cancel'));
    assert.equal(vm.phase, 'Running');
    assert.equal(vm.reason, 'MigrationCancelled');
    assert.deepEqual(vm.powerOffs, []);
    assert.throws(() => c.cancelOutgoing(), MigrationConflictError);
  });

  void it('resumes a source QEMU left stopped after a failure', async () => {
    const qmp = new ScriptedQmp([{ status: 'failed', 'error-desc': 'Connection refused' }]);
    const vm = new FakeVm(qmp);
    const c = controller(vm);
    c.startOutgoing(request());
    qmp.running = false;
    const result = await c.settled();
    assert.equal(result?.phase, 'Failed');
    assert.equal(result.reason, 'TargetUnreachable');
    assert.ok(qmp.commands().includes('cont'));
    assert.equal(result.sourceRunning, true);
    assert.equal(vm.phase, 'Running');
    assert.equal(vm.reason, 'MigrationFailed');
  });

  void it('refuses to migrate a VM that is not running or paused', () => {
    const vm = new FakeVm(new ScriptedQmp([{}]));
    vm.phase = 'Starting';
    assert.throws(() => controller(vm).startOutgoing(request()), MigrationConflictError);
  });
});

void describe('MigrationController (target)', () => {
  void it('refuses to listen unless started as a target and waiting', async () => {
    const vm = new FakeVm(new ScriptedQmp([{}]));
    await assert.rejects(controller(vm, 'run').prepareIncoming({ port: 0, postCopy: false, tls: sampleServerTls }), MigrationConflictError);
    await assert.rejects(controller(vm, 'migration-target').prepareIncoming({ port: 0, postCopy: false, tls: sampleServerTls }), MigrationConflictError);
  });

  void it('listens on the pod address and reports the port QEMU chose', async () => {
    const qmp = new ScriptedQmp([{ status: 'setup', 'socket-address': [{ type: 'inet', host: '10.78.0.2', port: '40111' }] }]);
    const vm = new FakeVm(qmp);
    vm.phase = 'WaitingForMigration';
    const status = await controller(vm, 'migration-target').prepareIncoming({ port: 0, postCopy: true, tls: sampleServerTls });
    assert.deepEqual(status, { phase: 'Listening', host: '10.78.0.2', port: 40111, postCopy: true, resumedAtMicros: null });
    assert.deepEqual(qmp.calls.find((c) => c.command === 'migrate-incoming')?.args, { uri: 'tcp:10.78.0.2:0' });
  });
});

void describe('podAddress', () => {
  void it('prefers a concrete listen address, else the pod IP from the environment', () => {
    assert.equal(podAddress('10.1.2.3', {}), '10.1.2.3');
    assert.equal(podAddress('0.0.0.0', { KEYVIRT_POD_IP: '10.9.9.9' }), '10.9.9.9');
    assert.equal(podAddress('::', { POD_IP: 'fd00::5' }), 'fd00::5');
    assert.equal(podAddress('0.0.0.0', {}), undefined);
  });
});

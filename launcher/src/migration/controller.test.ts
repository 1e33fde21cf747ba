// The controller and source driver against a scripted QMP peer (the real thing runs
// in test/migration/): which commands go to QEMU, how phases change, what is refused.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { z } from 'zod';
import { StartMigrationRequestSchema, type StartMigrationRequestInput } from '../api/migration.ts';
import { MigrationConflictError, MigrationController, type MigratableVm } from './controller.ts';
import { podAddress } from './attach.ts';
import type { MigrationQmp, MigrationQmpEvent } from './qmp-port.ts';
import { sampleClientTls, sampleServerTls } from './tls-sample-credentials.ts';

const silent = pino({ level: 'silent' });
const stateDir = mkdtempSync(path.join(tmpdir(), 'kv-migration-controller-'));
const tlsDir = path.join(stateDir, 'migration-tls');
after(() => rmSync(stateDir, { recursive: true, force: true }));

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
  guestHandedOver = false;
  handOverGuest(): void {
    this.guestHandedOver = true;
  }
  failAfterHandover(): void {
    this.phase = 'Failed';
    this.reason = 'PostCopyFailed';
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
  return new MigrationController({ vm, logger: silent, mode, podAddress: '10.78.0.2', pollIntervalMs: 2, tlsDir });
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
    const tls = qmp.calls.find((c) => c.command === 'object-add')?.args;
    assert.equal(tls?.['qom-type'], 'tls-creds-x509');
    assert.equal(tls['endpoint'], 'client');
    assert.equal(tls['verify-peer'], true);
    assert.deepEqual(qmp.calls.find((c) => c.command === 'migrate-set-parameters')?.args, {
      'tls-creds': tls['id'],
      'tls-hostname': 'migration.keyvirt.internal',
      'downtime-limit': 100,
      'max-bandwidth': 1 << 26,
      'max-postcopy-bandwidth': 1 << 26,
    });
    assert.deepEqual(qmp.calls.find((c) => c.command === 'migrate')?.args, { uri: 'tcp:10.78.0.2:49152' });
    assert.deepEqual(qmp.calls.find((c) => c.command === 'object-del')?.args, { id: tls['id'] }, 'the credentials leave QEMU afterwards');
    assert.ok(qmp.commands().indexOf('object-add') < qmp.commands().indexOf('migrate-set-parameters'));
    assert.deepEqual(readdirSync(tlsDir), [], 'no PEM file is left behind');
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

  void it('listens on the pod address through the TLS gate; QEMU only on its private unix socket', async () => {
    const qmp = new ScriptedQmp([{ status: 'setup' }]);
    const vm = new FakeVm(qmp);
    vm.phase = 'WaitingForMigration';
    const c = new MigrationController({ vm, logger: silent, mode: 'migration-target', podAddress: '127.0.0.1', pollIntervalMs: 2, tlsDir });
    const status = await c.prepareIncoming({ port: 0, postCopy: true, tls: sampleServerTls });
    assert.equal(status.host, '127.0.0.1');
    assert.ok(status.port > 0);
    assert.deepEqual({ ...status, port: 0 }, { phase: 'Listening', host: '127.0.0.1', port: 0, postCopy: true, resumedAtMicros: null, refusedConnections: 0 });
    const uri = String(qmp.calls.find((c) => c.command === 'migrate-incoming')?.args?.['uri']);
    assert.match(uri, /^unix:/);
    assert.equal(path.dirname(path.dirname(uri.slice('unix:'.length))), tlsDir);
    assert.deepEqual(qmp.commands(), ['migrate-set-capabilities', 'migrate-incoming'], 'no TLS object in the target QEMU: the gate holds the credentials');
    c.incoming?.abandon('test over');
    await c.incoming?.done();
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

// Post-copy without split brain, against a scripted QMP peer (the real thing runs in
// test/migration/post-copy-failure.test.ts): once QEMU has switched over, nothing the
// source driver or the controller does may run the guest on the source again.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { z } from 'zod';
import { StartMigrationRequestSchema, type MigrationPolicyInput } from '../api/migration.ts';
import { allowedAfterHandover } from '../supervisor/handover.ts';
import { MigrationConflictError, MigrationController, type MigratableVm } from './controller.ts';
import type { MigrationQmp, MigrationQmpEvent } from './qmp-port.ts';
import { sampleClientTls } from './tls-sample-credentials.ts';

const silent = pino({ level: 'silent' });
const stateDir = mkdtempSync(path.join(tmpdir(), 'kv-post-copy-'));
after(() => rmSync(stateDir, { recursive: true, force: true }));

type State = Record<string, unknown>;

/**
 * A source QEMU as a script: each `query-migrate` answers the next state; a state may
 * carry `emit`, MIGRATION events sent just before that answer (as QEMU sends them on
 * the same session). Records every command that reached it.
 */
class PostCopyQmp implements MigrationQmp {
  readonly sent: string[] = [];
  #states: (State & { emit?: string[] })[];
  #listeners = new Set<(e: MigrationQmpEvent) => void>();
  running = true;

  constructor(states: (State & { emit?: string[] })[]) {
    this.#states = states;
  }

  execute<S extends z.ZodType>(command: string, _args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
    this.sent.push(command);
    let reply: unknown = {};
    if (command === 'query-status') reply = { running: this.running, status: this.running ? 'running' : 'postmigrate' };
    if (command === 'query-migrate') {
      const next = this.#states.length > 1 ? this.#states.shift() : this.#states[0];
      const { emit = [], ...state } = next ?? {};
      for (const status of emit) this.#emit('MIGRATION', { status });
      if (typeof state.status === 'string' && state.status.startsWith('postcopy')) this.running = false;
      reply = state;
    }
    if (command === 'cont') this.running = true;
    return Promise.resolve(schema.parse(reply));
  }

  #emit(event: string, data: Record<string, unknown>): void {
    for (const l of this.#listeners) l({ event, data, timestamp: { seconds: 1000, microseconds: 0 } });
  }

  on(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.add(listener);
  }

  off(_event: 'event', listener: (e: MigrationQmpEvent) => void): void {
    this.#listeners.delete(listener);
  }

  /** Commands sent after the first post-copy answer that a fenced QEMU must never get. */
  forbiddenAfterSwitch(): string[] {
    const from = this.sent.indexOf('migrate-start-postcopy');
    return this.sent.slice(from < 0 ? 0 : from).filter((c) => !allowedAfterHandover(c));
  }
}

/** The VM as the supervisor models it: the fence is one-way, a fenced VM refuses to resume. */
class FencedVm implements MigratableVm {
  phase = 'Running';
  reason: string | undefined;
  message: string | undefined;
  guestHandedOver = false;
  readonly powerOffs: string[] = [];
  readonly qmp: PostCopyQmp;
  constructor(qmp: PostCopyQmp) {
    this.qmp = qmp;
  }
  setPhase(phase: string, reason?: string): void {
    if (this.phase === 'Failed') return;
    this.phase = phase;
    this.reason = reason;
  }
  expectExit(): void {}
  powerOff(reason = 'PoweredOff'): Promise<void> {
    this.powerOffs.push(reason);
    return Promise.resolve();
  }
  handOverGuest(): void {
    this.guestHandedOver = true;
  }
  failAfterHandover(message: string): void {
    assert.ok(this.guestHandedOver, 'failAfterHandover only behind the fence');
    this.phase = 'Failed';
    this.reason = 'PostCopyFailed';
    this.message = message;
  }
}

const GiB = 1024 ** 3;
const ram = (remaining: number, iteration: number): State => ({ transferred: 1e6 * iteration, remaining, total: GiB / 4, 'dirty-sync-count': iteration });
/** One downtime step and one stalled iteration per step: the second iteration switches to post-copy. */
const postCopyPolicy: MigrationPolicyInput = { postCopy: true, downtimeScheduleMs: [100], stalledIterationsPerStep: 1 };

function start(qmp: PostCopyQmp, policy: MigrationPolicyInput = postCopyPolicy): { vm: FencedVm; c: MigrationController } {
  const vm = new FencedVm(qmp);
  const c = new MigrationController({ vm, logger: silent, mode: 'run', podAddress: '10.78.0.1', pollIntervalMs: 2, tlsDir: path.join(stateDir, 'tls') });
  c.startOutgoing(StartMigrationRequestSchema.parse({ target: { host: '10.78.0.2', port: 49152 }, tls: sampleClientTls, policy }));
  return { vm, c };
}

void describe('post-copy failure on the source', () => {
  void it('post-copy broken (postcopy-paused): Failed/PostCopyFailed, no cont, the VM fenced', async () => {
    const qmp = new PostCopyQmp([
      { status: 'active', ram: ram(200e6, 1) },
      { status: 'active', ram: ram(200e6, 2) },
      { status: 'postcopy-active', emit: ['postcopy-active'], ram: ram(150e6, 3) },
      { status: 'postcopy-paused', emit: ['postcopy-paused'], 'error-desc': 'Connection reset by peer', ram: ram(150e6, 3) },
    ]);
    const { vm, c } = start(qmp);
    const result = await c.settled();
    assert.equal(result?.phase, 'Failed');
    assert.equal(result.reason, 'PostCopyFailed');
    assert.equal(result.postCopy, true);
    assert.equal(result.sourceRunning, false);
    assert.match(result.message ?? '', /Connection reset by peer/);
    assert.ok(qmp.sent.includes('migrate-start-postcopy'));
    assert.deepEqual(qmp.forbiddenAfterSwitch(), [], 'no cont, reset or cancel after the switch');
    assert.equal(qmp.running, false);
    assert.equal(vm.guestHandedOver, true);
    assert.equal(vm.phase, 'Failed');
    assert.equal(vm.reason, 'PostCopyFailed');
    assert.deepEqual(vm.powerOffs, [], 'QEMU stays, stopped, until it is powered off or terminated');
    assert.throws(() => c.cancelOutgoing(), MigrationConflictError);
  });

  void it('QEMU ends `failed` after a switch seen only as an event: still PostCopyFailed, no cont', async () => {
    const qmp = new PostCopyQmp([
      { status: 'active', ram: ram(200e6, 1) },
      { status: 'active', ram: ram(200e6, 2) },
      { status: 'failed', emit: ['postcopy-active', 'failed'], 'error-desc': 'Unable to write to socket' },
    ]);
    const { vm, c } = start(qmp);
    const result = await c.settled();
    assert.equal(result?.reason, 'PostCopyFailed');
    assert.equal(result.sourceRunning, false);
    assert.deepEqual(qmp.forbiddenAfterSwitch(), []);
    assert.equal(vm.phase, 'Failed');
    assert.equal(vm.reason, 'PostCopyFailed');
  });

  void it('a cancel during post-copy is refused and never reaches QEMU', async () => {
    const qmp = new PostCopyQmp([
      { status: 'active', ram: ram(200e6, 1) },
      { status: 'active', ram: ram(200e6, 2) },
      ...Array.from({ length: 40 }, () => ({ status: 'postcopy-active', emit: ['postcopy-active'], ram: ram(150e6, 3) })),
      { status: 'completed', emit: ['completed'], 'total-time': 900, downtime: 40, ram: ram(0, 3) },
    ]);
    const { vm, c } = start(qmp);
    while (!vm.guestHandedOver) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.throws(() => c.cancelOutgoing(), /post-copy/);
    assert.equal(c.outgoing?.result, null, 'the migration goes on');
    const result = await c.settled();
    assert.equal(result?.phase, 'Succeeded');
    assert.ok(!qmp.sent.includes('migrate_cancel'));
  });

  void it('post-copy that completes hands the VM over as usual', async () => {
    const qmp = new PostCopyQmp([
      { status: 'active', ram: ram(200e6, 1) },
      { status: 'active', ram: ram(200e6, 2) },
      { status: 'postcopy-active', emit: ['postcopy-active'], ram: ram(150e6, 3) },
      { status: 'completed', emit: ['completed'], 'total-time': 900, downtime: 40, ram: ram(0, 3) },
    ]);
    const { vm, c } = start(qmp);
    const result = await c.settled();
    assert.equal(result?.phase, 'Succeeded');
    assert.equal(result.postCopy, true);
    assert.deepEqual(vm.powerOffs, ['Migrated']);
    assert.deepEqual(qmp.forbiddenAfterSwitch(), []);
  });

  void it('post-copy requested but never switched: an ordinary failure, the source resumes', async () => {
    const qmp = new PostCopyQmp([
      { status: 'active', ram: ram(200e6, 1) },
      { status: 'active', ram: ram(200e6, 2) },
      { status: 'failed', emit: ['failed'], 'error-desc': 'Connection refused' },
    ]);
    qmp.running = true;
    const { vm, c } = start(qmp);
    const result = await c.settled();
    assert.equal(result?.reason, 'QemuFailed');
    assert.equal(result.sourceRunning, true);
    assert.equal(vm.guestHandedOver, false);
    assert.equal(vm.phase, 'Running');
    assert.equal(vm.reason, 'MigrationFailed');
  });
});

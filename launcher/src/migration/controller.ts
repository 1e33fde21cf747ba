// Ties the migration drivers to the launcher's VM: at most one migration per
// launcher, phase changes on the supervisor (Migrating, then Stopped/Migrated on
// success or back to Running on failure), the target side's teardown when its
// incoming stream fails, and the source's hand-off (QEMU quit, launcher exit 0).
// Once QEMU switches to post-copy the VM's fence goes up (every QMP command the source
// driver sends passes it) and a later failure ends the VM Failed/PostCopyFailed.
import type { Logger } from 'pino';
import type {
  IncomingMigrationStatus,
  MigrationResult,
  MigrationTarget,
  PrepareIncomingRequest,
  SourceMigrationStatus,
  StartMigrationRequest,
} from '../api/migration.ts';
import { IncomingMigration } from './target.ts';
import { SourceMigration, type TargetResumeReader } from './source.ts';
import { emptyReturn, type MigrationQmp } from './qmp-port.ts';
import { fencedQmp } from '../supervisor/handover.ts';
import type { TlsStaging } from './tls.ts';

/** The launcher's VM as migration sees it (the supervisor implements it). */
export interface MigratableVm {
  readonly phase: string;
  readonly qmp: MigrationQmp | undefined;
  setPhase(phase: 'Running' | 'Paused' | 'Migrating' | 'WaitingForMigration', reason?: string, message?: string): void;
  /** Marks QEMU's coming exit as intended: the VM ends Stopped with this reason. */
  expectExit(reason: string): void;
  /** Quits QEMU now; the VM ends Stopped with this reason. */
  powerOff(reason?: string): Promise<void>;
  /** True once the guest was handed over to a post-copy target: this QEMU must never run it again. */
  readonly guestHandedOver: boolean;
  /** Raises that fence (one-way): no command that could run the guest reaches QEMU from now on. */
  handOverGuest(): void;
  /** After a post-copy failure: the VM ends Failed/PostCopyFailed at once, its QEMU stopped. */
  failAfterHandover(message: string): void;
}

/** The request does not fit the launcher's mode or the VM's phase (HTTP 409). */
export class MigrationConflictError extends Error {
  override name = 'MigrationConflictError';
}

/** The request lacks something the launcher cannot work out itself (HTTP 400). */
export class MigrationRequestError extends Error {
  override name = 'MigrationRequestError';
}

/** The storage lease of a highly available VM, as migration uses it (ADR 0063). */
export interface MigrationLease {
  /** Source: the target launcher's identity in the lease, read from its API. */
  targetIdentity(target: MigrationTarget): Promise<string>;
  /** Source, at `completed`: the target becomes the holder. */
  handOver(successor: string): Promise<void>;
  /** Target, once the incoming migration completed: resolves once this launcher holds the lease. */
  awaitHandover(): Promise<void>;
  /** Target: the lease could not be had; QEMU is killed and the VM ends Failed. */
  fail(reason: string, message: string): void;
}

export interface MigrationControllerOptions {
  readonly vm: MigratableVm;
  readonly logger: Logger;
  readonly mode: 'run' | 'migration-target';
  /** The pod's own address, for the incoming listener when the request names none. */
  readonly podAddress: string | undefined;
  /** Private directory (under the state dir) where a migration's TLS PEMs briefly live for QEMU to load. */
  readonly tlsDir: string;
  /** Where an outgoing migration's TLS files go instead of `tlsDir` (a launcher outside the pod). */
  readonly tlsStaging?: TlsStaging;
  readonly readTargetResume?: TargetResumeReader;
  readonly pollIntervalMs?: number;
  /** Present for a highly available VM: pre-copy only, the lease passes to the target at completion. */
  readonly lease?: MigrationLease;
}

export class MigrationController {
  readonly #o: MigrationControllerOptions;
  readonly #log: Logger;
  #outgoing: SourceMigration | undefined;
  #outgoingRun: Promise<MigrationResult> | undefined;
  #incoming: IncomingMigration | undefined;

  constructor(options: MigrationControllerOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'migration' });
  }

  /** The current or last outgoing migration. */
  get outgoing(): SourceMigration | undefined {
    return this.#outgoing;
  }

  get incoming(): IncomingMigration | undefined {
    return this.#incoming;
  }

  /**
   * Starts migrating this VM to the target; returns at once with the initial status.
   * A launcher started as a target can migrate the VM on once it runs it.
   */
  startOutgoing(request: StartMigrationRequest): SourceMigrationStatus {
    const vm = this.#o.vm;
    if (this.#outgoing !== undefined && this.#outgoing.result === null) {
      throw new MigrationConflictError(`migration ${this.#outgoing.id} is still running`);
    }
    const phase = vm.phase;
    if (phase !== 'Running' && phase !== 'Paused') throw new MigrationConflictError(`cannot migrate a VM in phase ${phase}`);
    const qmp = vm.qmp;
    if (qmp === undefined) throw new MigrationConflictError('no QMP session with QEMU');
    const lease = this.#o.lease;
    if (lease !== undefined && request.policy.postCopy) {
      throw new MigrationConflictError(
        'post-copy is refused for a highly available VM: the target would run the guest before it holds the storage lease (pre-copy only)',
      );
    }
    if (lease !== undefined && request.target.launcherUrl === undefined) {
      throw new MigrationRequestError('target.launcherUrl is required for a highly available VM: the storage lease is handed to that launcher');
    }
    const successor = lease === undefined ? undefined : lease.targetIdentity(request.target);
    successor?.catch(() => undefined);
    const migrationId = request.migrationId ?? process.getBuiltinModule('node:crypto').randomUUID();
    const migration = new SourceMigration({
      ...(lease === undefined || successor === undefined ? {} : { onCompleted: async () => lease.handOver(await successor) }),
      request,
      migrationId,
      qmp: fencedQmp(qmp, () => vm.guestHandedOver),
      logger: this.#log,
      onPostCopySwitch: () => vm.handOverGuest(),
      tlsDir: this.#o.tlsDir,
      ...(this.#o.tlsStaging === undefined ? {} : { tlsStaging: this.#o.tlsStaging }),
      ...(this.#o.readTargetResume === undefined ? {} : { readTargetResume: this.#o.readTargetResume }),
      ...(this.#o.pollIntervalMs === undefined ? {} : { pollIntervalMs: this.#o.pollIntervalMs }),
    });
    this.#outgoing = migration;
    vm.setPhase('Migrating', 'MigrationRunning', `migrating to ${request.target.host}:${request.target.port}`);
    this.#outgoingRun = migration.run().then((result) => this.#concludeOutgoing(result, phase));
    return migration.status();
  }

  /** Cancels the running outgoing migration. */
  cancelOutgoing(): SourceMigrationStatus {
    const migration = this.#outgoing;
    if (migration === undefined) throw new MigrationConflictError('no migration to cancel');
    if (!migration.cancel()) {
      throw new MigrationConflictError(
        migration.result === null ? 'the migration has switched to post-copy and can no longer be cancelled' : 'the migration has already ended',
      );
    }
    return migration.status();
  }

  /** Resolves when the current outgoing migration (and its hand-off) is done. */
  async settled(): Promise<MigrationResult | undefined> {
    return this.#outgoingRun;
  }

  async #concludeOutgoing(result: MigrationResult, phaseBefore: 'Running' | 'Paused'): Promise<MigrationResult> {
    const vm = this.#o.vm;
    if (result.phase === 'Succeeded') {
      this.#log.info({ result }, 'migration succeeded; the target runs the VM now, quitting the source QEMU');
      vm.expectExit('Migrated');
      await vm.powerOff('Migrated').catch((err: unknown) => this.#log.warn({ err }, 'source QEMU did not quit cleanly'));
      return result;
    }
    if (result.reason === 'PostCopyFailed' || vm.guestHandedOver) {
      this.#log.error({ result }, 'post-copy migration failed; the VM cannot run here again');
      vm.handOverGuest();
      vm.failAfterHandover(result.message ?? 'post-copy migration failed after the switch-over');
      return result;
    }
    const reason = result.phase === 'Cancelled' ? 'MigrationCancelled' : 'MigrationFailed';
    const phase = result.sourceRunning ? 'Running' : 'Paused';
    this.#log.warn({ result, phaseBefore }, 'migration did not complete; the VM stays here');
    vm.setPhase(phase, reason, result.message);
    return result;
  }

  /** Target: starts listening for the incoming migration. */
  async prepareIncoming(request: PrepareIncomingRequest): Promise<IncomingMigrationStatus> {
    const vm = this.#o.vm;
    if (this.#o.mode !== 'migration-target') throw new MigrationConflictError('this launcher was not started as a migration target');
    if (this.#incoming !== undefined) throw new MigrationConflictError('the incoming migration is already prepared');
    if (vm.phase !== 'WaitingForMigration') throw new MigrationConflictError(`cannot receive a migration in phase ${vm.phase}`);
    const qmp = vm.qmp;
    if (qmp === undefined) throw new MigrationConflictError('no QMP session with QEMU');
    const host = request.address ?? this.#o.podAddress;
    if (host === undefined) {
      throw new MigrationRequestError('no address to listen on: pass address, or configure a non-wildcard listen address or the pod IP');
    }
    const incoming = new IncomingMigration({
      qmp,
      logger: this.#log,
      host,
      port: request.port,
      postCopy: request.postCopy,
      tls: request.tls,
      tlsDir: this.#o.tlsDir,
    });
    this.#incoming = incoming;
    const status = await incoming.listen().catch((err: unknown) => {
      this.#incoming = undefined;
      throw err;
    });
    void incoming.done().then((phase) => this.#concludeIncoming(incoming, phase));
    return status;
  }

  async #concludeIncoming(incoming: IncomingMigration, phase: 'Succeeded' | 'Failed' | 'Listening' | 'Receiving'): Promise<void> {
    const vm = this.#o.vm;
    const lease = this.#o.lease;
    if (phase === 'Succeeded' && lease !== undefined) {
      // QEMU runs with -S: the guest stays paused until this launcher holds the lease.
      vm.setPhase('WaitingForMigration', 'WaitingForLease');
      try {
        await lease.awaitHandover();
      } catch (err) {
        this.#log.error({ err }, 'the lease was not handed over; the guest never runs here');
        lease.fail('LeaseNotHandedOver', (err as Error).message);
        return;
      }
      await vm.qmp?.execute('cont', undefined, emptyReturn).catch((err: unknown) => this.#log.error({ err }, 'cont after the lease hand-over failed'));
      vm.setPhase('Running', 'IncomingMigrationCompleted');
      return;
    }
    if (phase === 'Succeeded') {
      // RESUME usually moved the VM to Running already; a paused source stays paused.
      const running = incoming.status().resumedAtMicros !== null || vm.phase === 'Running';
      vm.setPhase(running ? 'Running' : 'Paused', 'IncomingMigrationCompleted');
      return;
    }
    this.#log.warn({ status: incoming.status() }, 'incoming migration failed; tearing the target down');
    vm.expectExit('IncomingMigrationFailed');
    await vm.powerOff('IncomingMigrationFailed').catch(() => undefined);
  }
}

/** Reads the target launcher's RESUME time, retrying briefly while it is not yet known. */
export function targetResumeReader(
  incoming: (target: MigrationTarget, signal: AbortSignal) => Promise<IncomingMigrationStatus>,
): TargetResumeReader {
  return async (target, signal) => {
    while (!signal.aborted) {
      const status = await incoming(target, signal);
      if (status.resumedAtMicros !== null || status.phase === 'Failed') return status.resumedAtMicros;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return null;
  };
}

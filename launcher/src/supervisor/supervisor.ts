// Supervises one QEMU process: starts it, follows its QMP events, keeps the guest-agent
// monitor running beside it, runs the lifecycle actions, and turns QEMU's exit into a
// final phase (Stopped or Failed) with a reason. Phases:
//   Starting → Running ⇄ Paused → Stopping → Stopped | Failed
//   (WaitingForMigration and Migrating are entered by the migration modules.)
// Once a post-copy migration has handed the guest over to its target, the supervisor
// is fenced (handover.ts, ADR 0054): no command that could run the guest reaches QEMU
// again, and a post-copy failure ends the VM Failed/PostCopyFailed with QEMU stopped.
import { EventEmitter, once } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { GuestAgentClient } from '../agent/client.ts';
import { GuestAgentMonitor } from '../agent/monitor.ts';
import type { LauncherPhase, LeaseStatus, Status } from '../api/status.ts';
import type { QmpClient } from '../qmp/client.ts';
import { emptyReturnSchema, queryStatusSchema } from '../qmp/messages.ts';
import type { QmpEvent } from '../qmp/messages.ts';
import type { Accelerator } from '../qemu/command-line.ts';
import { guestAgentStatus, guestStatus } from './guest-status.ts';
import { ActionConflictError } from './action-conflict.ts';
import { assertAllowedAfterHandover, GuestHandedOverError } from './handover.ts';
import { connectQmp, spawnQemu } from './qemu-process.ts';
import type { QemuExit, QemuProcess, QemuSpawner } from './qemu-process.ts';

export { ActionConflictError } from './action-conflict.ts';

export interface SupervisorOptions {
  logger: Logger;
  qemuBinary: string;
  qemuArgs: readonly string[];
  /** How QEMU is started: the launcher's own child by default. */
  spawnQemu?: QemuSpawner;
  /** Opens QEMU's QMP and guest-agent sockets (net.createConnection by default; pod/outside-view.ts). */
  connectSocket?: (path: string) => Socket;
  qmpSocket: string;
  accelerator: Accelerator;
  disks: Status['disks'];
  /** Guest-agent channel socket; undefined when the template has no agent. */
  guestAgent?: { socket: string; pollIntervalMs: number; retryIntervalMs: number };
  qmpConnectTimeoutMs?: number;
  /**
   * Runs once QEMU has exited, before the final status is published (a highly available
   * VM's launcher releases its lease there). Failures are logged, never fatal.
   */
  afterQemuExit?: (status: Status) => Promise<void>;
  /** How long a hard power-off waits for `quit` before SIGKILL. */
  powerOffTimeoutMs?: number;
  now?: () => Date;
}

interface SupervisorEvents {
  status: [Status];
  qemu: [QmpEvent];
}

const FINAL_PHASES: readonly LauncherPhase[] = ['Stopped', 'Failed'];
/** The guest agent's virtserialport (qemu/command-line.ts): its VSERPORT_CHANGE wakes the agent monitor. */
const AGENT_PORT_ID = 'channel-qga0';

export class VmSupervisor extends EventEmitter<SupervisorEvents> {
  #o: SupervisorOptions;
  #log: Logger;
  #now: () => Date;
  #phase: LauncherPhase = 'Starting';
  #reason: string | undefined = 'QemuStarting';
  #message: string | undefined;
  #proc: QemuProcess | undefined;
  #qmp: QmpClient | undefined;
  #agent: GuestAgentMonitor | undefined;
  #agentAbort = new AbortController();
  #runState: string | undefined;
  #exit: Status['qemu']['exit'];
  #shutdownEvent: { guest: boolean; reason: string } | undefined;
  /** Set when the launcher itself ends QEMU: the exit then ends the VM with this phase and reason. */
  #intent: { reason: string; outcome: 'Stopped' | 'Failed' } | undefined;
  /** Set once a post-copy migration has switched over: this QEMU must never run the guest again. */
  #handedOverAt: string | undefined;
  #times: Status['timestamps'];
  #lease: LeaseStatus | undefined;
  /** Set once the lease was lost: QEMU is killed (or never started). */
  #leaseFence: { reason: string; message: string } | undefined;
  #finished: Promise<Status>;
  #finish: (status: Status) => void = () => undefined;

  constructor(options: SupervisorOptions) {
    super();
    this.#o = options;
    this.#log = options.logger.child({ component: 'supervisor' });
    this.#now = options.now ?? ((): Date => new Date());
    const at = this.#now().toISOString();
    this.#times = { launcherStartedAt: at, phaseTransitionAt: at };
    this.#finished = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  get phase(): LauncherPhase {
    return this.#phase;
  }

  /** The QMP session while QEMU runs (for the migration modules). */
  get qmp(): QmpClient | undefined {
    return this.#qmp;
  }

  /** True once the guest was handed over to a post-copy migration target (never reset). */
  get guestHandedOver(): boolean {
    return this.#handedOverAt !== undefined;
  }

  /** True while the QEMU process exists (it may outlive a final phase after a post-copy failure). */
  get qemuAlive(): boolean {
    return this.#proc?.alive() === true;
  }

  /**
   * Raises the post-copy fence: from now on no command that could run the guest
   * (`cont`, resets, wake-ups, ACPI, `migrate_cancel`) is sent to this QEMU. One-way.
   */
  handOverGuest(): void {
    if (this.#handedOverAt !== undefined) return;
    this.#handedOverAt = this.#now().toISOString();
    this.#log.warn('post-copy switch-over: the guest belongs to the migration target now; this QEMU will not run it again');
    this.#agent?.hold(true);
  }

  /**
   * After a post-copy failure: the VM ends Failed/PostCopyFailed at once. QEMU stays
   * stopped (it holds guest pages the target never received) until it is powered off
   * or the launcher is terminated; nothing can start the guest here.
   */
  failAfterHandover(message: string): void {
    if (this.#handedOverAt === undefined) throw new ActionConflictError('the guest was not handed over to a post-copy target');
    this.#intent = { reason: 'PostCopyFailed', outcome: 'Failed' };
    this.setPhase('Failed', 'PostCopyFailed', message);
  }

  /** The synchronised guest-agent client while the agent is connected. */
  get agentClient(): GuestAgentClient | undefined {
    return this.#agent?.client;
  }

  get status(): Status {
    const agent = this.#agent?.snapshot ?? { connected: false };
    return {
      phase: this.#phase,
      reason: this.#reason,
      message: this.#message,
      accelerator: this.#o.accelerator,
      qemu: { pid: this.#proc?.pid, runState: this.#runState, exit: this.#exit },
      guestAgent: guestAgentStatus(agent),
      guest: guestStatus(agent),
      disks: this.#o.disks,
      ...(this.#lease === undefined ? {} : { lease: { ...this.#lease } }),
      timestamps: { ...this.#times },
    };
  }

  /** Publishes the lease as this launcher sees it (ADR 0063). */
  setLease(lease: LeaseStatus): void {
    this.#lease = lease;
    this.emit('status', this.status);
  }

  /**
   * Self-fence (ADR 0063): SIGKILL to QEMU now, no QMP, no grace; the VM ends Failed
   * with `reason` (LeaseLost, LeaseExpired). Before QEMU started, it never starts.
   */
  killForLease(reason: string, message: string): void {
    if (this.#leaseFence !== undefined) return;
    this.#leaseFence = { reason, message };
    const proc = this.#proc;
    if (proc !== undefined && this.qemuAlive) {
      proc.kill();
      this.#intent = { reason, outcome: 'Failed' };
      this.#message = message;
    }
    this.#log.error({ reason, why: message, qemuPid: this.#proc?.pid }, 'lease fence: qemu killed');
    this.#lease = { ...(this.#lease ?? {}), state: 'Lost', reason };
    if (this.#proc === undefined) {
      this.setPhase('Failed', reason, message);
      this.#finish(this.status);
    } else {
      this.emit('status', this.status);
    }
  }

  /** Resolves with the final status once QEMU has exited. */
  finished(): Promise<Status> {
    return this.#finished;
  }

  /** Starts QEMU and waits until QMP answers; a failure leaves the supervisor Failed. */
  async start(): Promise<void> {
    if (this.#leaseFence !== undefined) throw new ActionConflictError(`QEMU not started: ${this.#leaseFence.message}`);
    this.#log.info({ binary: this.#o.qemuBinary, args: this.#o.qemuArgs }, 'starting qemu');
    const spawn = this.#o.spawnQemu ?? ((binary, args, log): Promise<QemuProcess> => Promise.resolve(spawnQemu(binary, args, log)));
    try {
      const proc = await spawn(this.#o.qemuBinary, this.#o.qemuArgs, this.#log.child({ component: 'qemu' }));
      this.#proc = proc;
      // The launcher's CPU time so far (Node's start, the bundle, configuration, preparation): what its start costs before QEMU runs.
      const cpu = process.cpuUsage();
      this.#log.info({ qemuPid: proc.pid, launcherCpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'qemu spawned');
      this.#times.qemuStartedAt = this.#now().toISOString();
      void proc.exited.then((exit) => this.#onExit(exit));
      const qmp = await connectQmp(proc, this.#o.qmpSocket, this.#log, this.#o.qmpConnectTimeoutMs ?? 30_000, this.#o.connectSocket);
      this.#qmp = qmp;
      qmp.on('event', (event) => this.#onQmpEvent(event));
      const state = await qmp.execute('query-status', undefined, queryStatusSchema);
      this.#runState = state.status;
      this.#startAgent();
      if (state.status === 'inmigrate') {
        this.setPhase('WaitingForMigration', 'IncomingMigration');
      } else if (state.running) {
        this.setPhase('Running', 'QemuRunning');
      } else {
        this.setPhase('Paused', `QemuState_${state.status}`);
      }
    } catch (err) {
      this.#log.error({ err }, 'qemu failed to start');
      this.#message = (err as Error).message;
      const proc = this.#proc;
      if (proc === undefined) {
        // Never spawned: no exit will end the VM.
        this.setPhase('Failed', 'QemuStartFailed', this.#message);
        this.#finish(this.status);
      } else if (proc.alive()) {
        this.#intent = { reason: 'QemuStartFailed', outcome: 'Failed' };
        proc.kill();
      }
      throw err;
    }
  }

  /** Moves to a phase (also used by the migration modules). Final phases are never left. */
  setPhase(phase: LauncherPhase, reason?: string, message?: string): void {
    if (FINAL_PHASES.includes(this.#phase)) return;
    if (phase === this.#phase && reason === this.#reason && message === this.#message) return;
    const at = this.#now().toISOString();
    if (phase === 'Running' && this.#phase !== 'Running') this.#times.runningSince = at;
    if (phase !== this.#phase) this.#times.phaseTransitionAt = at;
    this.#log.info({ from: this.#phase, to: phase, reason, message }, 'phase changed');
    this.#phase = phase;
    this.#agent?.hold(phase === 'Paused' || phase === 'Migrating' || phase === 'WaitingForMigration' || this.#handedOverAt !== undefined);
    this.#reason = reason;
    this.#message = message;
    this.emit('status', this.status);
  }

  /** Marks the coming QEMU exit as intended: the VM ends Stopped with `reason` (e.g. after a migration). */
  expectExit(reason: string): void {
    this.#intent = { reason, outcome: 'Stopped' };
  }

  pause(): Promise<void> {
    this.#require(['Running'], 'pause');
    return this.#command('stop').then(() => this.setPhase('Paused', 'PausedByUser'));
  }

  resume(): Promise<void> {
    this.#require(['Paused'], 'resume');
    return this.#command('cont').then(() => this.setPhase('Running', 'ResumedByUser'));
  }

  async reset(): Promise<void> {
    this.#require(['Running', 'Paused'], 'reset');
    await this.#command('system_reset');
  }

  /** Reboots through the guest agent when it is connected, else by a hardware reset. */
  async reboot(): Promise<void> {
    this.#require(['Running'], 'reboot');
    const agent = this.agentClient;
    if (agent !== undefined) {
      await agent.shutdown('reboot');
      return;
    }
    await this.#command('system_reset');
  }

  /**
   * Graceful stop: ACPI power button, then (after half the grace period, when the agent
   * is connected) guest-shutdown through the agent, then SIGKILL when the grace period is
   * over. Returns once the sequence has begun; `finished()` resolves when QEMU is gone.
   */
  async shutdown(gracePeriodMs: number): Promise<void> {
    if (this.#phase === 'Stopping') return;
    if (this.#handedOverAt !== undefined && this.#phase === 'Failed' && this.qemuAlive) {
      // The guest is not here to shut down: end the stopped source QEMU, never `cont` it.
      void this.powerOff('PostCopyFailed', 'Failed').catch((err: unknown) => this.#log.warn({ err }, 'power-off failed'));
      return;
    }
    this.#require(['Running', 'Paused', 'Starting', 'WaitingForMigration'], 'shutdown');
    const proc = this.#proc;
    if (proc === undefined) throw new ActionConflictError('QEMU is not running');
    if (this.#handedOverAt !== undefined) throw new GuestHandedOverError('the guest was handed over to the post-copy migration target');
    const wasPaused = this.#phase === 'Paused';
    this.setPhase('Stopping', 'ShutdownRequested');
    try {
      if (wasPaused) await this.#command('cont');
      await this.#command('system_powerdown');
    } catch (err) {
      this.#log.warn({ err }, 'ACPI power-down failed');
    }
    void this.#escalate(proc, gracePeriodMs);
  }

  /**
   * Hard power-off now: QMP `quit`, SIGKILL if QEMU lingers. The VM then ends with
   * `outcome` (Stopped, or Failed when the launcher gives up on a VM it cannot keep).
   */
  async powerOff(reason = 'PoweredOff', outcome: 'Stopped' | 'Failed' = 'Stopped', message?: string): Promise<void> {
    const proc = this.#proc;
    // A final phase with QEMU still there is a post-copy failure (failAfterHandover): ending QEMU is allowed.
    if (proc === undefined || !this.qemuAlive || (FINAL_PHASES.includes(this.#phase) && this.#handedOverAt === undefined)) {
      throw new ActionConflictError(`cannot stop a VM in phase ${this.#phase}`);
    }
    const quit = (): Promise<void> => this.#command('quit').catch((err: unknown) => this.#log.warn({ err }, 'quit failed'));
    if (FINAL_PHASES.includes(this.#phase)) {
      // A source QEMU in postcopy-paused may not answer `quit` before its migration thread gives up: do not wait for the reply.
      this.#log.info({ reason }, 'powering off the stopped source QEMU of a failed post-copy migration');
      void quit();
    } else {
      this.#intent = { reason, outcome };
      this.setPhase('Stopping', reason, message);
      await quit();
    }
    const gone = await Promise.race([proc.exited.then(() => true), sleep(this.#o.powerOffTimeoutMs ?? 5000, false)]);
    if (!gone) proc.kill();
  }

  async #escalate(proc: QemuProcess, gracePeriodMs: number): Promise<void> {
    const deadline = Date.now() + gracePeriodMs;
    const exitedWithin = (ms: number): Promise<boolean> => Promise.race([proc.exited.then(() => true), sleep(Math.max(0, ms), false)]);
    if (this.agentClient !== undefined && (await exitedWithin(gracePeriodMs / 2))) return;
    const agent = this.agentClient;
    if (agent !== undefined && this.#phase === 'Stopping') {
      this.#log.info('guest ignored the ACPI power button; asking the guest agent');
      await agent.shutdown('powerdown').catch((err: unknown) => this.#log.warn({ err }, 'guest-shutdown failed'));
    }
    if (await exitedWithin(deadline - Date.now())) return;
    this.#log.warn({ gracePeriodMs }, 'grace period over; killing qemu');
    this.#intent = { reason: 'GracePeriodExpired', outcome: 'Stopped' };
    proc.kill();
  }

  #require(phases: readonly LauncherPhase[], action: string): void {
    if (!phases.includes(this.#phase)) {
      throw new ActionConflictError(`cannot ${action} a VM in phase ${this.#phase}`);
    }
  }

  async #command(command: string): Promise<void> {
    const qmp = this.#qmp;
    if (qmp === undefined) throw new ActionConflictError('no QMP session with QEMU');
    assertAllowedAfterHandover(this.#handedOverAt !== undefined, command);
    await qmp.execute(command, undefined, emptyReturnSchema);
  }

  #startAgent(): void {
    const cfg = this.#o.guestAgent;
    if (cfg === undefined) return;
    const monitor = new GuestAgentMonitor({
      path: cfg.socket,
      logger: this.#log,
      ...(this.#o.connectSocket === undefined ? {} : { connect: this.#o.connectSocket }),
      pollIntervalMs: cfg.pollIntervalMs,
      retryIntervalMs: cfg.retryIntervalMs,
      now: this.#now,
    });
    this.#agent = monitor;
    monitor.on('change', () => this.emit('status', this.status));
    void monitor.run(this.#agentAbort.signal);
  }

  #onQmpEvent(event: QmpEvent): void {
    this.#log.debug({ event: event.event, data: event.data }, 'qmp event');
    this.emit('qemu', event);
    switch (event.event) {
      case 'VSERPORT_CHANGE':
        if (event.data?.id === AGENT_PORT_ID && event.data.open === true) this.#agent?.wake();
        break;
      case 'STOP':
        this.#runState = 'paused';
        if (this.#phase === 'Running') this.setPhase('Paused', 'PausedByQemu');
        break;
      case 'RESUME':
        this.#runState = 'running';
        if (this.#handedOverAt !== undefined) {
          // Nothing in the launcher sends `cont` behind the fence; should QEMU resume the
          // guest by itself, stop it at once: the target owns the guest.
          this.#log.error({ handedOverAt: this.#handedOverAt }, 'source guest resumed after the post-copy switch-over; stopping it');
          void this.#command('stop').catch((err: unknown) => this.#log.error({ err }, 'could not stop the resumed source guest'));
          break;
        }
        if (this.#phase === 'Paused' || this.#phase === 'WaitingForMigration' || this.#phase === 'Starting') {
          this.setPhase('Running', 'QemuRunning');
        }
        break;
      case 'SHUTDOWN': {
        this.#runState = 'shutdown';
        const guest = event.data?.guest === true;
        const reason = typeof event.data?.reason === 'string' ? event.data.reason : 'unknown';
        this.#shutdownEvent = { guest, reason };
        if (this.#phase !== 'Stopping') this.setPhase('Stopping', guest ? 'GuestShutdown' : 'HostShutdown');
        break;
      }
      default:
        break;
    }
  }

  async #onExit(exit: QemuExit): Promise<void> {
    // The SHUTDOWN event may still be in flight on the QMP socket: let it land first.
    const qmp = this.#qmp;
    if (qmp?.connected === true) await Promise.race([once(qmp, 'disconnect'), sleep(500)]);
    qmp?.close();
    this.#agentAbort.abort();
    this.#exit = { code: exit.code, signal: exit.signal, at: this.#now().toISOString() };
    this.#runState = undefined;
    const [phase, reason, message] = this.#classifyExit(exit);
    this.#log.info({ exit, phase, reason }, 'qemu exited');
    const after = this.#o.afterQemuExit;
    if (after !== undefined) {
      await after({ ...this.status, phase, reason, message }).catch((err: unknown) => this.#log.warn({ err }, 'after-exit step failed'));
    }
    this.setPhase(phase, reason, message);
    this.#finish(this.status);
  }

  #classifyExit(exit: QemuExit): [LauncherPhase, string, string] {
    const stderr = this.#proc?.stderrTail() ?? '';
    const detail = stderr === '' ? '' : `: ${stderr}`;
    if (exit.code === 0 && this.#shutdownEvent?.guest === true) return ['Stopped', 'GuestShutdown', 'the guest powered off'];
    const intent = this.#intent;
    if (intent !== undefined) return [intent.outcome, intent.reason, this.#message ?? `QEMU ended by the launcher (${intent.reason})`];
    if (exit.signal !== null) return ['Failed', 'QemuKilled', `QEMU was killed by ${exit.signal}${detail}`];
    if (exit.code !== 0) return ['Failed', 'QemuCrashed', `QEMU exited with code ${exit.code}${detail}`];
    if (this.#shutdownEvent?.reason === 'host-qmp-quit') return ['Stopped', 'PoweredOff', 'QEMU quit on a QMP request'];
    if (this.#shutdownEvent !== undefined) return ['Failed', 'QemuTerminated', `QEMU shut down (${this.#shutdownEvent.reason})${detail}`];
    return ['Failed', 'QemuExitedUnexpectedly', `QEMU exited without a shutdown event${detail}`];
  }
}

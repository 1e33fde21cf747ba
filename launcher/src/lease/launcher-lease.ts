// The lease in a launcher (ADR 0063): acquires before QEMU starts (the phase stays
// Starting, reason AcquiringLease / WaitingForLeaseExpiry, the lease in the status),
// fences the disks after a takeover, renews while QEMU runs, kills QEMU when the lease
// is lost, releases it once QEMU has exited. In a migration, the source hands it to the
// target at `completed`; the target waits for it before it lets the guest run. Run by
// a node agent that stops, it writes a parting renewal for the next agent (ADR 0138).
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { LeaseConfig } from '../api/config.ts';
import { LEASE_HOLDER_ENV, LEASE_KILL_LATENCY_MS, LEASE_NODE_ENV } from '../api/config.ts';
import type { LauncherPhase, LeaseStatus, Status } from '../api/status.ts';
import { acquireLease } from './acquirer.ts';
import { checkHandover, checkHold, partingTiming } from './decisions.ts';
import type { LeaseTiming } from './decisions.ts';
import { fenceDisks } from './disk-fence.ts';
import { LeaseHolder } from './holder.ts';
import { ensureLeaseDirectory, readLease } from './lease-file.ts';
import type { LeaseRecord } from './record.ts';

/** The VM as the lease sees it (the supervisor implements it). */
export interface LeasedVm {
  readonly phase: LauncherPhase;
  setPhase(phase: 'Starting' | 'WaitingForMigration', reason?: string, message?: string): void;
  setLease(lease: LeaseStatus): void;
  /** SIGKILL to QEMU now; the VM ends Failed with this reason. */
  killForLease(reason: string, message: string): void;
}

export class LeaseConfigError extends Error {
  override name = 'LeaseConfigError';
}

export class LeaseUnavailableError extends Error {
  override name = 'LeaseUnavailableError';
}

export interface LauncherLeaseOptions {
  readonly config: LeaseConfig;
  /** Disk files moved to a new inode after a takeover. */
  readonly disksToFence: readonly string[];
  readonly vm: LeasedVm;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Where QEMU's pod keeps a fence deadline of its own (ADR 0131): called with the
   * milliseconds from now after which the pod kills QEMU unless called again.
   */
  readonly podFenceDeadline?: (msFromNow: number) => Promise<void>;
}

/**
 * How long after the last renewal's start the pod kills QEMU: 1 s before F (the pod
 * checks once a second), never less than F/2. Either way its kill lands within F plus
 * the kill latency that the expiry L allows for (ADR 0063).
 */
export function podFenceAfterMs(fenceTimeoutMs: number): number {
  return Math.max(fenceTimeoutMs - LEASE_KILL_LATENCY_MS, fenceTimeoutMs / 2);
}

/** This launcher's identity: the configured holderId, else the pod UID from the downward API. */
export function leaseIdentity(config: LeaseConfig, env: NodeJS.ProcessEnv): string {
  const id = config.holderId ?? env[LEASE_HOLDER_ENV];
  if (id === undefined || !/^[A-Za-z0-9._-]{1,128}$/.test(id)) {
    throw new LeaseConfigError(`lease.holderId is not set and ${LEASE_HOLDER_ENV} holds no pod UID: a highly available VM's launcher needs its identity`);
  }
  return id;
}

export class LauncherLease {
  readonly self: string;
  readonly node: string;
  readonly #o: LauncherLeaseOptions;
  readonly #log: Logger;
  readonly #timing: LeaseTiming;
  #holder: LeaseHolder | undefined;
  #takeover = false;
  /** Migration target: the record as the source held it when this launcher started. */
  #sourceRecord: LeaseRecord | undefined;
  /** The pod's deadline writes, in order: a later one never lands before an earlier one. */
  #podDeadlineWrites: Promise<void> = Promise.resolve();

  constructor(options: LauncherLeaseOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'lease' });
    const env = options.env ?? process.env;
    this.self = leaseIdentity(options.config, env);
    this.node = env[LEASE_NODE_ENV] ?? hostname();
    const { renewIntervalMs, fenceTimeoutMs, acquireTimeoutMs } = options.config;
    this.#timing = { renewIntervalMs, fenceTimeoutMs, acquireTimeoutMs };
  }

  get holder(): LeaseHolder | undefined {
    return this.#holder;
  }

  #status(status: LeaseStatus): void {
    this.#o.vm.setLease({ ...status, holderId: this.self });
  }

  /** Before QEMU starts (run mode): acquire, start renewing, fence the disks after a takeover. */
  async acquire(signal?: AbortSignal): Promise<void> {
    const { vm, config } = this.#o;
    await ensureLeaseDirectory(config.path);
    vm.setPhase('Starting', 'AcquiringLease');
    const acquired = await acquireLease({
      file: config.path,
      self: this.self,
      node: this.node,
      timing: this.#timing,
      nodeFenced: config.nodeFenced,
      logger: this.#log,
      onStatus: (status) => {
        this.#status(status);
        vm.setPhase('Starting', status.state === 'WaitingForExpiry' ? 'WaitingForLeaseExpiry' : 'AcquiringLease');
      },
      ...(signal === undefined ? {} : { signal }),
    });
    this.#takeover = acquired.takeover;
    this.#hold(acquired.record, acquired.claimedAtMs);
    if (acquired.takeover && this.#o.disksToFence.length > 0) {
      vm.setPhase('Starting', 'FencingDisks', `moving ${this.#o.disksToFence.length} disk(s) to new inodes after the takeover`);
      await fenceDisks(this.#o.disksToFence, this.#log);
    }
    const fenced = this.#holder?.fenced;
    if (fenced !== undefined) throw new LeaseUnavailableError(`the lease was lost before QEMU started: ${fenced.message}`);
    vm.setPhase('Starting', 'QemuStarting');
  }

  /**
   * A launcher that adopts a running QEMU (a node agent that restarted, ADR 0136): holds
   * the lease its predecessor held for this pod, as the pod's own identity, counting the
   * fence from that predecessor's last renewal, which the deadline it left in the pod
   * tells (`podDeadlineFromNowMs`; the pod could move that file, as it could for its own
   * script's fence, and would gain only its own VM's lease). Past it, or when the lease is no longer this pod's, nothing is written and
   * this rejects: the caller kills the adopted QEMU.
   */
  async resume(podDeadlineFromNowMs: number | undefined): Promise<void> {
    const nowMs = performance.now();
    if (podDeadlineFromNowMs === undefined) {
      throw new LeaseUnavailableError('the pod holds no fence deadline: when its lease was last renewed is unknown');
    }
    if (podDeadlineFromNowMs <= 0) {
      throw new LeaseUnavailableError(`the pod's fence deadline passed ${Math.round(-podDeadlineFromNowMs)} ms ago: its QEMU is being killed`);
    }
    const obs = await readLease(this.#o.config.path);
    const check = obs.kind === 'record' ? checkHold(obs, this.self, obs.record.generation) : undefined;
    if (check === undefined || !check.holds) {
      const why = check === undefined ? `the lease is ${obs.kind}` : check.why;
      throw new LeaseUnavailableError(`the adopted QEMU's lease is no longer this pod's: ${why}`);
    }
    // The last write stated its F (longer after a parting renewal, ADR 0138); the pod's
    // deadline was set from it.
    const fenceMs = check.record.fenceTimeoutMs;
    const lastRenewalStartMs = nowMs + podDeadlineFromNowMs - podFenceAfterMs(fenceMs);
    this.#log.info({ generation: check.record.generation, sinceRenewalMs: Math.round(performance.now() - lastRenewalStartMs), fenceMs }, 'lease resumed for the adopted QEMU');
    // Renewed at once: the pod's deadline may be near.
    this.#hold(check.record, lastRenewalStartMs, true, fenceMs);
    const fenced = this.#holder?.fenced;
    if (fenced !== undefined) throw new LeaseUnavailableError(`the lease expired while no launcher renewed it: ${fenced.message}`);
  }

  #hold(record: LeaseRecord, acquiredAtMs: number, renewNow = false, acquiredFenceMs?: number): void {
    const holder = new LeaseHolder({
      file: this.#o.config.path,
      self: this.self,
      node: this.node,
      acquired: record,
      acquiredAtMs,
      ...(acquiredFenceMs === undefined ? {} : { acquiredFenceMs }),
      timing: this.#timing,
      logger: this.#log,
      onFence: (reason, message) => this.#o.vm.killForLease(reason, message),
      ...(this.#o.podFenceDeadline === undefined ? {} : { onRenewed: (lastStartMs: number, fenceMs: number) => this.#movePodDeadline(lastStartMs, fenceMs) }),
    });
    this.#holder = holder;
    holder.start(renewNow);
    this.#status({ state: 'Held', holder: this.self, generation: record.generation, takeover: this.#takeover });
  }

  #movePodDeadline(lastRenewalStartMs: number, fenceMs: number): void {
    const write = this.#o.podFenceDeadline;
    if (write === undefined) return;
    this.#podDeadlineWrites = this.#podDeadlineWrites.then(() =>
      write(lastRenewalStartMs + podFenceAfterMs(fenceMs) - performance.now()).catch((err: unknown) => this.#log.warn({ err }, "could not move the pod's fence deadline")),
    );
  }

  /**
   * A node agent that stops while this lease's QEMU runs on in its pod (ADR 0138): one
   * parting renewal states F = `agentRestartGraceMs` (and the L that goes with it), and
   * resolves once the pod's deadline has moved to it, so that the next agent finds QEMU
   * running and resumes the lease. False when there was none (no grace configured, no
   * pod deadline, nothing held, or the renewal not written): QEMU is fenced as before.
   */
  async part(): Promise<boolean> {
    const grace = this.#o.config.agentRestartGraceMs;
    const holder = this.#holder;
    if (grace === 0 || holder === undefined || holder.fenced !== undefined || this.#o.podFenceDeadline === undefined) return false;
    const parted = await holder.part(partingTiming(this.#timing, grace));
    await this.#podDeadlineWrites;
    return parted;
  }

  /**
   * Once QEMU has exited: release the lease, unless it was lost or handed over. Lease
   * I/O that hangs must not keep the launcher alive: after F the lease is left to expire.
   */
  async afterQemuExit(status: Status): Promise<void> {
    const holder = this.#holder;
    if (holder === undefined) return;
    if (holder.fenced !== undefined || status.reason === 'Migrated') {
      holder.halt();
      return;
    }
    const timeout = new AbortController();
    const released = await Promise.race([
      holder.release().catch((err: unknown) => {
        this.#log.warn({ err }, 'lease release failed; it will expire');
        return false;
      }),
      sleep(this.#timing.fenceTimeoutMs, 'timeout' as const, { signal: timeout.signal }).catch(() => false as const),
    ]);
    timeout.abort();
    if (released === 'timeout') {
      holder.halt();
      this.#log.warn('lease release hung; it will expire');
    } else if (released) {
      this.#status({ state: 'Released', holder: this.self, generation: holder.generation });
    }
  }

  /** Migration source, once QEMU reported `completed`: the target becomes the holder. */
  async handOver(successor: string): Promise<void> {
    const holder = this.#holder;
    if (holder === undefined) throw new LeaseUnavailableError('this launcher holds no lease to hand over');
    const next = await holder.handOver(successor, '');
    this.#status({ state: 'Released', holder: successor, generation: next.generation });
  }

  /** Migration target, at start: remember the source's record; the guest waits for the hand-over. */
  async noteSource(): Promise<void> {
    const obs = await readLease(this.#o.config.path);
    this.#sourceRecord = obs.kind === 'record' ? obs.record : undefined;
    this.#status({ state: 'Acquiring', holder: this.#sourceRecord?.holder, generation: this.#sourceRecord?.generation });
  }

  /**
   * Migration target, once the incoming migration completed (guest paused by `-S`):
   * polls every 50 ms until the source names this launcher holder, then renews. Gives up
   * after L (the source died before the hand-over: its lease expires and the VM restarts
   * through the ordinary path).
   */
  async awaitHandover(pollMs = 50): Promise<void> {
    const started = performance.now();
    for (;;) {
      const readStart = performance.now();
      const check = checkHandover(await readLease(this.#o.config.path), this.self, this.#sourceRecord?.holder, this.#sourceRecord?.generation);
      if (check.outcome === 'mine') {
        this.#log.info({ generation: check.record.generation, waitedMs: Math.round(performance.now() - started) }, 'lease handed over by the migration source');
        this.#hold(check.record, readStart);
        return;
      }
      if (check.outcome === 'lost') throw new LeaseUnavailableError(check.why);
      if (performance.now() - started >= this.#timing.acquireTimeoutMs) {
        throw new LeaseUnavailableError(`the migration source did not hand the lease over within ${this.#timing.acquireTimeoutMs} ms`);
      }
      await sleep(pollMs);
    }
  }
}

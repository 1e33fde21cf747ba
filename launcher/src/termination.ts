// What the launcher does when its pod is deleted (SIGTERM): stop the guest gracefully
// within the pod's grace period. A running outgoing migration comes first: while it is
// still pre-copy it is cancelled (the source resumes, then shuts down like any other
// VM); once post-copy has begun the target holds the newest guest state and cancelling
// is impossible, so the migration is left to finish — the VM lives on at the target
// and this launcher ends Stopped/Migrated — or, when post-copy breaks, the launcher
// reports the failure and ends Failed.
import type { Logger } from 'pino';
import type { MigrationResult } from './api/migration.ts';
import type { LauncherPhase } from './api/status.ts';

/** The launcher's VM as termination sees it (the supervisor implements it). */
export interface TerminatingVm {
  readonly phase: LauncherPhase;
  /** QEMU still runs: in a final phase only after a post-copy failure, its source QEMU kept stopped (ADR 0054). */
  readonly qemuAlive?: boolean;
  shutdown(gracePeriodMs: number): Promise<void>;
  powerOff(reason?: string, outcome?: 'Stopped' | 'Failed', message?: string): Promise<void>;
}

/** The launcher's migrations as termination sees them (the migration controller implements it). */
export interface TerminatingMigrations {
  readonly outgoing: { readonly result: MigrationResult | null; cancel(message?: string): boolean } | undefined;
  settled(): Promise<MigrationResult | undefined>;
}

export interface TerminateOptions {
  readonly vm: TerminatingVm;
  readonly migrations: TerminatingMigrations;
  readonly gracePeriodMs: number;
  readonly logger: Logger;
  /** Monotonic milliseconds; injected by tests. */
  readonly nowMs?: () => number;
}

const FINAL: readonly LauncherPhase[] = ['Stopped', 'Failed'];

/** Settles a running outgoing migration; true when the VM still belongs to this launcher afterwards. */
async function settleOutgoing(options: TerminateOptions): Promise<boolean> {
  const { migrations, logger } = options;
  const outgoing = migrations.outgoing;
  if (outgoing?.result !== null) return true;
  if (outgoing.cancel('the launcher is terminating')) {
    logger.info('termination requested during a migration; cancelling it first');
    const result = await migrations.settled();
    logger.info({ phase: result?.phase, sourceRunning: result?.sourceRunning }, 'migration settled; shutting the VM down here');
    return true;
  }
  logger.info('termination requested during post-copy; letting the migration finish');
  const result = await migrations.settled();
  if (result === undefined || result.phase === 'Succeeded') return false;
  if (result.sourceRunning) return true;
  // Post-copy broke: the guest state is split between source and target; nothing here can resume it.
  logger.error({ result }, 'post-copy migration failed while terminating; the VM is lost');
  await options.vm.powerOff('MigrationFailed', 'Failed', `post-copy migration failed while terminating: ${result.message ?? 'unknown error'}`);
  return false;
}

/** Runs the termination sequence; resolves once the graceful shutdown has begun (or nothing is left to do). */
export async function terminate(options: TerminateOptions): Promise<void> {
  const { vm, logger } = options;
  const nowMs = options.nowMs ?? ((): number => performance.now());
  const startedAt = nowMs();
  if (!(await settleOutgoing(options))) return;
  if (FINAL.includes(vm.phase)) {
    // A late SIGTERM after a post-copy failure: end the stopped source QEMU, never resume it.
    if (vm.qemuAlive === true) await vm.powerOff('PostCopyFailed', 'Failed').catch((err: unknown) => logger.warn({ err }, 'power-off failed'));
    return;
  }
  const remainingMs = Math.max(0, options.gracePeriodMs - (nowMs() - startedAt));
  try {
    await vm.shutdown(remainingMs);
  } catch (err) {
    logger.warn({ err }, 'graceful shutdown could not start; powering off');
    await vm.powerOff().catch(() => undefined);
  }
}

// The post-copy fence. Once a post-copy migration has switched over, the target QEMU
// runs the guest and the source QEMU only serves the pages the target has not received
// yet: the source must never run the guest again, whatever happens next (a resume
// action, a shutdown's `cont`, a late SIGTERM, a cancel, a failed migration), or two
// copies of one guest would run against the same disks. The fence is a one-way latch
// in the supervisor; every QMP command the launcher sends to a fenced QEMU passes
// through `assertAllowedAfterHandover`, which lets through only commands that cannot
// start, reset or resume the guest (an allow-list: a command QEMU adds later is
// refused until someone decides it is harmless). See ADR 0054.
import type { z } from 'zod';
import type { MigrationQmp, MigrationQmpEvent } from '../migration/qmp-port.ts';
import { ActionConflictError } from './action-conflict.ts';

/** A command that could run the guest was refused because the guest now belongs to the migration target (HTTP 409). */
export class GuestHandedOverError extends ActionConflictError {
  override name = 'GuestHandedOverError';
}

/**
 * QMP commands a fenced source may still send: reading state, ending QEMU, pausing
 * (harmless, and the answer to an unexpected RESUME), and steering the post-copy
 * stream that the target depends on.
 */
const ALLOWED_AFTER_HANDOVER: ReadonlySet<string> = new Set([
  'qmp_capabilities',
  'quit',
  'stop',
  'migrate-set-parameters',
  'migrate-start-postcopy',
  'migrate-pause',
  'object-del',
]);

/** True when `command` cannot run the guest on a source that has handed it over. */
export function allowedAfterHandover(command: string): boolean {
  return command.startsWith('query-') || ALLOWED_AFTER_HANDOVER.has(command);
}

/** Throws GuestHandedOverError when the fence is up and `command` is not allowed behind it. */
export function assertAllowedAfterHandover(fenced: boolean, command: string): void {
  if (fenced && !allowedAfterHandover(command)) throw refusal(command);
}

function refusal(command: string): GuestHandedOverError {
  return new GuestHandedOverError(`refusing QMP ${command}: the guest was handed over to the post-copy migration target and must not run here again`);
}

/** A QMP session whose commands pass the fence first (the migration modules use it). */
export function fencedQmp(qmp: MigrationQmp, fenced: () => boolean): MigrationQmp {
  return {
    execute<S extends z.ZodType>(
      command: string,
      args: Readonly<Record<string, unknown>> | undefined,
      schema: S,
      options?: { timeoutMs?: number },
    ): Promise<z.infer<S>> {
      if (fenced() && !allowedAfterHandover(command)) return Promise.reject(refusal(command));
      return qmp.execute(command, args, schema, options);
    },
    on(event: 'event', listener: (event: MigrationQmpEvent) => void): unknown {
      return qmp.on(event, listener);
    },
    off(event: 'event', listener: (event: MigrationQmpEvent) => void): unknown {
      return qmp.off(event, listener);
    },
  };
}

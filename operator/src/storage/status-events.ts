// Events for a StorageDomain's transitions only: a new phase, and conditions that
// newly turn True (space running low, maintenance or deletion blocked).
import type { StorageDomainStatus } from '@keyvirt/crds';
import type { Logger } from 'pino';
import type { EventSink, EventTarget, RecordedEvent } from '../runtime/event-recorder.ts';

const WARNING_CONDITIONS: Readonly<Record<string, string>> = {
  LowSpace: 'CheckSpace',
  CriticalSpace: 'CheckSpace',
  MaintenanceBlocked: 'EnterMaintenance',
  DeletionBlocked: 'Delete',
};

function conditionStatus(status: StorageDomainStatus | undefined, type: string): string | undefined {
  return status?.conditions?.find((c) => c.type === type)?.status;
}

/** The events `next` deserves compared with `previous`. */
export function transitionEvents(previous: StorageDomainStatus | undefined, next: StorageDomainStatus): RecordedEvent[] {
  const out: RecordedEvent[] = [];
  if (next.phase !== undefined && next.phase !== previous?.phase) {
    const ready = next.conditions?.find((c) => c.type === 'Ready');
    out.push({
      type: next.phase === 'Error' ? 'Warning' : 'Normal',
      reason: next.phase,
      action: 'Reconcile',
      note: next.phase === 'Active' ? `storage domain is Active${next.capacity === undefined ? '' : `: ${next.free ?? '?'} free of ${next.capacity}`}` : (ready?.message ?? next.phase),
    });
  }
  for (const [type, action] of Object.entries(WARNING_CONDITIONS)) {
    const condition = next.conditions?.find((c) => c.type === type);
    if (condition?.status === 'True' && conditionStatus(previous, type) !== 'True') {
      out.push({ type: 'Warning', reason: type, action, note: condition.message });
    }
  }
  return out;
}

export async function recordTransitions(
  events: EventSink,
  target: EventTarget,
  previous: StorageDomainStatus | undefined,
  next: StorageDomainStatus,
  log: Logger,
): Promise<void> {
  for (const event of transitionEvents(previous, next)) {
    log.info({ reason: event.reason, note: event.note }, 'storage domain event');
    await events.record(target, event);
  }
}

// A Manager with no API server behind it (every request and watch rejects), a manual
// clock and silent metrics: for tests of how controllers share the manager's caches.
import { pino } from 'pino';
import { ManualClock } from './manual-clock.ts';
import { Manager } from './manager.ts';
import { ManagerCaches } from './manager-caches.ts';

export function offlineManager(): Manager {
  const reject = (): Promise<never> => Promise.reject(new Error('no API server in this test'));
  const client = { request: reject, watch: reject };
  const clock = new ManualClock();
  const log = pino({ level: 'silent' });
  return new Manager({
    log,
    client,
    clock,
    caches: new ManagerCaches({ log, client, sleep: () => Promise.resolve() }),
    metrics: { onLeadershipChange: () => undefined },
  });
}

// A Manager with no API server behind it (every request and watch rejects), a manual
// clock and silent metrics: for tests of how controllers share the manager's caches.
import { pino } from 'pino';
import { ManualClock } from './manual-clock.ts';
import { Manager } from './manager.ts';

export function offlineManager(): Manager {
  const reject = (): Promise<never> => Promise.reject(new Error('no API server in this test'));
  return new Manager({
    log: pino({ level: 'silent' }),
    client: { request: reject, watch: reject },
    clock: new ManualClock(),
    metrics: {
      contentType: 'text/plain',
      metrics: () => Promise.resolve(''),
      onList: () => undefined,
      onWatchConnected: () => undefined,
      onWatchError: () => undefined,
      onBadObject: () => undefined,
      onLeadershipChange: () => undefined,
    },
    health: { host: '127.0.0.1', port: 0 },
  });
}

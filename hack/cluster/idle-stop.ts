// Stops a test-started cluster once no test process has used it for a while.
// Usage: node hack/cluster/idle-stop.ts <idle-ms>
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { z } from 'zod';
import { clusterDown, clusterOwner } from './cluster.ts';
import { clusterLayout } from './layout.ts';
import { withClusterLock } from './lock.ts';
import { liveUsers } from './users.ts';

const idleMs = z.coerce.number().int().min(0).parse(process.argv[2] ?? '30000');
const log = pino({ base: { cmd: 'idle-stop' } });
const layout = clusterLayout();

await sleep(idleMs);
await withClusterLock(layout, async () => {
  const owner = clusterOwner(layout);
  const users = liveUsers(layout);
  if (owner !== 'tests' || users.length > 0) {
    log.info({ owner, users }, 'cluster still wanted; keeping it');
    return;
  }
  log.info('no test uses the cluster any more; stopping it');
  await clusterDown(layout, log);
});

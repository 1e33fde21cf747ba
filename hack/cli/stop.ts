// `npm stop`: tears the local cluster down and leaves no process, network
// namespace, bridge or cgroup behind (certificates stay for the next start).
import { pino } from 'pino';
import { clusterDown } from '../cluster/cluster.ts';
import { clusterLayout } from '../cluster/layout.ts';
import { withClusterLock } from '../cluster/lock.ts';
import { stopOperator } from './operator-steps.ts';

const log = pino({ base: { cmd: 'stop' } });
try {
  await stopOperator(clusterLayout(), log);
  const layout = clusterLayout();
  await withClusterLock(layout, () => clusterDown(layout, log));
  log.info('local cluster stopped');
} catch (err) {
  log.error({ err }, 'stop failed');
  process.exit(1);
}

// Runs the launcher's pod-network start (wait for the node-prepared tap, read the lease,
// serve it by DHCP) on its own, inside a pod namespace, for the pod-network suites.
// argv: <guest MAC>. Prints one JSON line with the lease when serving; stops on SIGTERM.
import { pino } from 'pino';
import { startPodNetwork } from '../../launcher/src/network/pod-network.ts';

const mac = process.argv[2];
const logger = pino({ level: 'info' });
const network = await startPodNetwork({ mac, logger, timeoutMs: 30_000 });
process.stdout.write(`${JSON.stringify({ serving: network.lease })}\n`);
process.once('SIGTERM', () => void network.close().then(() => process.exit(0)));

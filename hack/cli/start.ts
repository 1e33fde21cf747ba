// `npm start`: builds what is missing, brings the local cluster up (control plane,
// two simulated nodes, KeyVirt CRDs) and returns, leaving it running in the
// background. Steps run in order; later parts of KeyVirt append their own steps.
import { pino } from 'pino';
import { clusterSteps, setClusterOwner } from '../cluster/cluster.ts';
import type { StartStep } from '../cluster/cluster.ts';
import { clusterLayout, network } from '../cluster/layout.ts';
import { kubectlPath } from '../cluster/kubectl.ts';
import { withClusterLock } from '../cluster/lock.ts';
import { operatorSteps } from './operator-steps.ts';

const log = pino({ base: { cmd: 'start' } });
const layout = clusterLayout();

const steps: readonly StartStep[] = [
  ...clusterSteps,
  ...operatorSteps,
];

async function runSteps(): Promise<void> {
  setClusterOwner(layout, 'start');
  for (const step of steps) {
    const started = Date.now();
    log.info({ step: step.name }, 'step');
    await step.run(layout, log);
    log.info({ step: step.name, ms: Date.now() - started }, 'step done');
  }
}

try {
  // The lock keeps concurrent test runs from bringing the same cluster up at the same time.
  await withClusterLock(layout, runSteps);
} catch (err) {
  log.error({ err }, 'start failed; logs are in .keyvirt/logs (npm stop tears down what started)');
  process.exit(1);
}

process.stdout.write(`
KeyVirt local cluster is running (logs: ${layout.logDir}).
  export KUBECONFIG=${layout.kubeconfig}
  alias kubectl=${kubectlPath(layout)}
  kubectl get nodes
  kubectl get --raw /version
Nodes and pods live on the bridge ${network.bridge} (${network.subnet}); the API server is ${network.gateway}.
A read-only user's kubeconfig: ${layout.viewerKubeconfig}
Stop everything with: npm stop
`);

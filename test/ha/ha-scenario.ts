// What the HA fault suites share: a suite's own operator, throwaway nodes of its own
// (labelled with the run id, tainted as throwaway; each reaching the shared storage
// through its own storage view when asked), a posix StorageDomain under the suite's
// temp directory, one VM booting the test guest from a blank raw disk on it, the
// continuous double-run checker on that VM, and the timing of its fail-over.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { StorageDomain, type VirtualMachine, type VirtualMachineInput } from '@keyvirt/crds';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { DoubleRunChecker } from '../support/double-run-checker.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, startSuiteOperator, stopOperator, type OperatorProcess } from '../operator/operator-process.ts';
import { keepEvidence } from '../operator/scenario-evidence.ts';
import { startChartNodeAgent } from '../network/chart-node-agent.ts';
import { apply, condition, getVm, scratch, TEST_RUN_LABEL, testVm, waitVm, type Scratch } from '../operator/vm-fixtures.ts';

export interface HaScenarioOptions {
  /** Short prefix of namespaces and node names. */
  readonly prefix: string;
  /** Throwaway nodes to create (the VM may run on any of them). */
  readonly nodes: number;
  /** Each node reaches the shared storage through its own view (storage faults). */
  readonly storageViews?: boolean;
  /**
   * The node agent runs the VMs' launchers (ADRs 0134-0136): the chart's agent runs on
   * every node (held launchers on) and the operator with `--launcher-host node-agent`.
   */
  readonly heldLaunchers?: boolean;
}

export interface HaScenario {
  readonly cluster: TestCluster;
  readonly guest: TestGuest;
  readonly s: Scratch;
  readonly operator: OperatorProcess;
  readonly nodes: readonly string[];
  /** The shared storage: the posix domain's path. */
  readonly root: string;
  readonly domain: string;
  vmName(name: string): { namespace: string; name: string };
  /** Host path of a VM's raw root disk on the domain. */
  diskOf(vm: string): string;
  /** Applies a VM booting the test guest from a blank raw disk on the domain, on the suite's nodes only. */
  createVm(name: string, options: { ha: boolean }): void;
  /** Waits until the VM runs with its guest agent connected (on `node`, when given); returns it. */
  waitRunning(name: string, what: string, node?: (n: string | undefined) => boolean, timeoutMs?: number): Promise<VirtualMachine>;
  /** Starts the double-run checker on a VM and waits until its guest writes records. */
  watch(name: string): Promise<DoubleRunChecker>;
  /** Creates the chart's node agent pod on `node` again, once its pod was deleted (heldLaunchers). */
  startNodeAgent(node: string): void;
  dispose(): Promise<void>;
}

/** Running, agent connected and Ready: the guest is up. */
export function guestUp(vm: VirtualMachine): boolean {
  return vm.status?.phase === 'Running' && condition(vm, 'AgentConnected')?.status === 'True' && condition(vm, 'Ready')?.status === 'True';
}

export async function startHaScenario(o: HaScenarioOptions): Promise<HaScenario> {
  const cluster = await ensureCluster();
  const guest = await testGuest();
  const s = await scratch(cluster, o.prefix);
  const root = path.join(s.dir, 'shared');
  mkdirSync(path.join(root, 'templates'), { recursive: true });
  const domain = `sd-${s.runId}-ha`;
  const nodes: string[] = [];
  const clusterScoped: string[][] = [];
  const startAgent = (n: string): string[][] => startChartNodeAgent(cluster, `held-${s.runId}`, s.namespace, n, ['launcher.host=node-agent', 'nodeAgent.podNetwork.enabled=false']);
  let operator: OperatorProcess | undefined;
  const dispose = async (): Promise<void> => {
    if (operator !== undefined) await stopOperator(operator);
    for (const [kind = '', name = ''] of clusterScoped) cluster.kubectl(['delete', kind, name, '--ignore-not-found']);
    await keepEvidence('HA scenario', cluster, s, nodes);
    try {
      await s.cleanup();
    } finally {
      for (const n of nodes) await cluster.deleteNode(n).catch(() => undefined);
      cluster.kubectl(['delete', 'storagedomain', domain, '--ignore-not-found', '--wait=false']);
      try {
        cluster.kubectl(['patch', 'storagedomain', domain, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      } catch {
        // never created, or gone
      }
      cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${domain}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pv', `keyvirt-sd-${domain}`, '--ignore-not-found', '--wait=false']);
      deleteDomainJobPods(cluster, domain);
    }
  };
  try {
    const labels = { [TEST_RUN_LABEL]: s.runId };
    for (let i = 0; i < o.nodes; i++) {
      nodes.push((await cluster.createNode(`${o.prefix}-${String(i + 1)}`, { labels, ...(o.storageViews === true ? { storageRoot: root } : {}) })).name);
    }
    if (o.heldLaunchers === true) for (const n of nodes) clusterScoped.push(...startAgent(n));
    // The held suite's faults start up to five HA replacements of its one VM within ten
    // minutes, past the default restart budget (3), which is not what it tests.
    operator = await startSuiteOperator(cluster, s, o.prefix, o.heldLaunchers === true ? ['--launcher-host', 'node-agent', '--ha-restart-budget', '10'] : undefined);
    apply(cluster, {
      apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain',
      metadata: { name: domain, labels },
      spec: { type: 'posix', posix: { path: root }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } },
    });
    await eventually(`StorageDomain ${domain} Active`, () => {
      const out = cluster.kubectl(['get', 'storagedomain', domain, '-o', 'json', '--ignore-not-found']);
      return out.trim() !== '' && StorageDomain.parse(JSON.parse(out)).status?.phase === 'Active' ? true : undefined;
    }, 240_000, 1000);
  } catch (err) {
    await dispose();
    throw err;
  }
  const running = operator;
  const vmName = (name: string): { namespace: string; name: string } => ({ namespace: s.namespace, name });
  const diskOf = (vm: string): string => path.join(root, 'images', s.namespace, vm, 'root.raw');
  return {
    cluster, guest, s, operator: running, nodes, root, domain, vmName, diskOf,
    createVm: (name, { ha }) => {
      const base = testVm(s, guest, { name, storageDomain: domain });
      const manifest: VirtualMachineInput = {
        ...base,
        spec: {
          ...base.spec,
          runStrategy: 'Always',
          highAvailability: { enabled: ha, priority: 50 },
          nodeSelector: { [TEST_RUN_LABEL]: s.runId },
          tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
        },
      };
      apply(cluster, manifest);
    },
    waitRunning: (name, what, node, timeoutMs = 600_000) =>
      waitVm(cluster, vmName(name), what, (v) => guestUp(v) && (node === undefined || node(v.status?.nodeName)), timeoutMs),
    watch: async (name) => {
      const checker = DoubleRunChecker.start({ namespace: s.namespace, name, disk: diskOf(name) });
      await eventually(`${name} writing records to its disk`, async () => ((await checker.report()).bootIds.length > 0 ? true : undefined), 120_000, 250);
      return checker;
    },
    startNodeAgent: (n) => void startAgent(n),
    dispose,
  };
}

/** The node a VM's status names. */
export function vmNode(cluster: TestCluster, ref: { namespace: string; name: string }): string | undefined {
  return getVm(cluster, ref.namespace, ref.name)?.status?.nodeName;
}


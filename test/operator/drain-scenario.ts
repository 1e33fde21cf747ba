// What the drain suite and the drain benchmark share: a throwaway source node running
// LiveMigrate VMs and Shutdown VMs (the test guest on a ReadWriteMany hostPath claim
// each, so every node opens the same disk), throwaway target nodes added once they
// run, the suite's own operator, and `kubectl drain` run as a user runs it.
import { spawn } from 'node:child_process';
import type { VirtualMachine, VirtualMachineInput } from '@keyvirt/crds';
import { VirtualMachineMigration } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { readDiskRecords, testGuest, type CounterRecord, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSubresourceOperator, stopOperator } from './operator-process.ts';
import { keepEvidence } from './scenario-evidence.ts';
import { apply, pvcDisk, scratch, type Scratch, TEST_RUN_LABEL, testVm, waitVm } from './vm-fixtures.ts';

export interface DrainVm {
  readonly name: string;
  readonly eviction: 'LiveMigrate' | 'Shutdown';
  /** The raw disk image the guest writes its counter records to. */
  readonly image: string;
}

export interface DrainScenario {
  readonly cluster: TestCluster;
  readonly guest: TestGuest;
  readonly s: Scratch;
  readonly operator: OperatorProcess;
  readonly source: string;
  readonly targets: readonly string[];
  readonly vms: readonly DrainVm[];
  dispose(): Promise<void>;
}

export interface DrainScenarioOptions {
  prefix: string;
  liveMigrate: number;
  shutdown: number;
  targets: number;
  memory?: string;
}

/** Running with a booted guest: guest OS info and an IP reported. */
export function guestUp(vm: VirtualMachine): boolean {
  return vm.status?.phase === 'Running' && vm.status.guestOSInfo !== undefined && vm.status.interfaces?.[0]?.ipAddress !== undefined;
}

function drainVmManifest(sc: { s: Scratch; guest: TestGuest }, vm: { name: string; eviction: DrainVm['eviction']; memory?: string | undefined }): VirtualMachineInput {
  const base = testVm(sc.s, sc.guest, { name: vm.name, claimName: `${vm.name}-data`, memory: vm.memory });
  return {
    ...base,
    spec: {
      ...base.spec,
      evictionStrategy: vm.eviction,
      // Only this suite's throwaway nodes: they carry its run label and the throwaway taint.
      nodeSelector: { [TEST_RUN_LABEL]: sc.s.runId },
      tolerations: [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }],
    },
  };
}

/**
 * Brings up the source node, the suite's operator and the VMs (all on the source, the
 * only node they may use), waits until every guest writes to its disk, then adds the
 * target nodes.
 */
export async function startDrainScenario(o: DrainScenarioOptions): Promise<DrainScenario> {
  const cluster = await ensureCluster();
  const guest = await testGuest();
  const s = await scratch(cluster, o.prefix);
  const nodes: string[] = [];
  let operator: OperatorProcess | undefined;
  const dispose = async (): Promise<void> => {
    if (operator !== undefined) await stopOperator(operator);
    await keepEvidence('drain scenario', cluster, s, nodes);
    try {
      await s.cleanup();
    } finally {
      for (const n of nodes) await cluster.deleteNode(n).catch(() => undefined);
    }
  };
  try {
    const labels = { [TEST_RUN_LABEL]: s.runId };
    nodes.push((await cluster.createNode(`${o.prefix}-src`, { labels })).name);
    const source = nodes[0] ?? '';
    // With the subresources listener: its launcher eviction webhook is what makes `kubectl drain` wait (ADR 0121).
    operator = await startSubresourceOperator(cluster, s, o.prefix);
    const vms: DrainVm[] = [];
    const plan = [
      ...Array.from({ length: o.liveMigrate }, (_, i) => ({ name: `live-${String(i + 1)}`, eviction: 'LiveMigrate' as const })),
      ...Array.from({ length: o.shutdown }, (_, i) => ({ name: `down-${String(i + 1)}`, eviction: 'Shutdown' as const })),
    ];
    for (const p of plan) {
      const image = await pvcDisk(cluster, s, `${p.name}-data`);
      apply(cluster, drainVmManifest({ s, guest }, { ...p, memory: o.memory }));
      vms.push({ ...p, image });
    }
    for (const vm of vms) {
      await waitVm(cluster, { namespace: s.namespace, name: vm.name }, `running on ${source}`, (v) => guestUp(v) && v.status?.nodeName === source, 600_000);
      await eventually(`${vm.name} writing to its disk`, async () => ((await readDiskRecords(vm.image)).length > 3 ? true : undefined), 120_000);
    }
    for (let i = 0; i < o.targets; i++) nodes.push((await cluster.createNode(`${o.prefix}-dst`, { labels })).name);
    return { cluster, guest, s, operator, source, targets: nodes.slice(1), vms, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}


export interface DrainResult {
  readonly exitCode: number | null;
  readonly ms: number;
  readonly output: string;
}

/** `kubectl drain` of the pinned kubectl, as a person runs it, in a child process (it blocks until done). */
export function drainNode(cluster: TestCluster, node: string, timeoutSeconds: number): Promise<DrainResult> {
  const started = performance.now();
  const args = ['--kubeconfig', cluster.kubeconfig, 'drain', node, '--ignore-daemonsets', '--delete-emptydir-data', `--timeout=${String(timeoutSeconds)}s`];
  const child = spawn(cluster.kubectlPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve({ exitCode: code, ms: Math.round(performance.now() - started), output }));
  });
}

/** The evacuation migrations the operator made for a node. */
export function evacuationMigrations(cluster: TestCluster, namespace: string, node: string): VirtualMachineMigration[] {
  const out = cluster.kubectl(['get', 'virtualmachinemigrations', '-n', namespace, '-l', `keyvirt.io/evacuation=${node}`, '-o', 'json']);
  return z.object({ items: z.array(VirtualMachineMigration) }).parse(JSON.parse(out)).items;
}

/** Every pod bound to a node, in any namespace. */
export function podsOnNode(cluster: TestCluster, node: string): string[] {
  return cluster
    .kubectl(['get', 'pods', '-A', '--field-selector', `spec.nodeName=${node}`, '-o', 'name'])
    .split('\n')
    .filter((l) => l !== '');
}

/** The records of the guest's current life on its disk: its boot id and the highest counter. */
export async function currentBoot(image: string, knownBoots: readonly string[] = []): Promise<{ bootId: string; maxN: number; records: CounterRecord[] }> {
  const records = await readDiskRecords(image);
  const boots = [...new Set(records.map((r) => r.bootId))];
  const fresh = boots.filter((b) => !knownBoots.includes(b));
  if (fresh.length > 1 || (fresh.length === 0 && boots.length !== 1)) throw new Error(`cannot tell the current boot among ${boots.join(', ')}`);
  const bootId = fresh[0] ?? boots[0] ?? '';
  const maxN = Math.max(0, ...records.filter((r) => r.bootId === bootId).map((r) => r.n));
  return { bootId, maxN, records };
}

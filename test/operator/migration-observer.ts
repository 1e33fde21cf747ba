// What the migration suites and the migration-e2e bench share: the VirtualMachineMigration
// manifest, typed reads of it, and an observer that samples every launcher of a VM
// (GET /v1/status with the VM's token) while a migration runs and records the invariant
// the operator promises: never two launchers running the guest, never none.
import { VirtualMachineMigration, type VirtualMachineMigrationInput } from '@keyvirt/crds';
import { LauncherClient } from '@keyvirt/launcher/api';
import type { TestCluster } from '../support/cluster.ts';
import { TEST_RUN_LABEL, getVm, launcherPods, type Scratch } from './vm-fixtures.ts';

export function migrationManifest(s: Scratch, name: string, vmName: string, overrides?: VirtualMachineMigrationInput['spec']['policyOverrides']): VirtualMachineMigrationInput {
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineMigration',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { vmName, ...(overrides === undefined ? {} : { policyOverrides: overrides }) },
  };
}

export function getMigration(cluster: TestCluster, namespace: string, name: string): VirtualMachineMigration | undefined {
  const out = cluster.kubectl(['get', 'virtualmachinemigration', name, '-n', namespace, '-o', 'json', '--ignore-not-found']);
  return out.trim() === '' ? undefined : VirtualMachineMigration.parse(JSON.parse(out));
}

/** The VM's launcher token (its Secret's `token`). */
export function vmToken(cluster: TestCluster, namespace: string, vmName: string): string {
  const b64 = cluster.kubectl(['get', 'secret', `launcher-${vmName}`, '-n', namespace, '-o', 'jsonpath={.data.token}']);
  return Buffer.from(b64, 'base64').toString('utf8');
}

export interface Sample {
  readonly at: number;
  /** Pod name → launcher phase ('unreachable' when it did not answer). */
  readonly launchers: Readonly<Record<string, string>>;
  /** Launchers whose guest runs (phase Running). */
  readonly running: number;
  /** Launchers holding the guest: Running, Migrating (the source while copying) or Paused. */
  readonly holding: number;
  /** The VM's status phase. */
  readonly vmPhase: string | undefined;
}

const HOLDING = new Set(['Running', 'Migrating', 'Paused']);

/** Samples the VM's launchers every `intervalMs` until stopped. */
export class LauncherObserver {
  readonly samples: Sample[] = [];
  readonly #stop = new AbortController();
  readonly #done: Promise<void>;

  constructor(cluster: TestCluster, namespace: string, vmName: string, token: string, intervalMs = 250) {
    this.#done = this.#loop(cluster, namespace, vmName, token, intervalMs);
  }

  async #loop(cluster: TestCluster, namespace: string, vmName: string, token: string, intervalMs: number): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const pods = launcherPods(cluster, namespace, vmName).filter((p) => p.status?.podIP !== undefined && p.status.phase === 'Running');
      // Sources first: a target reports Running only after the source handed over.
      pods.sort((a, b) => (a.metadata.name.length - b.metadata.name.length) || a.metadata.name.localeCompare(b.metadata.name));
      const launchers: Record<string, string> = {};
      for (const pod of pods) {
        const client = new LauncherClient({ baseUrl: `http://${pod.status?.podIP ?? ''}:8443`, token, timeoutMs: 2000 });
        launchers[pod.metadata.name] = await client.status().then(
          (st) => st.phase,
          () => 'unreachable',
        );
      }
      const phases = Object.values(launchers);
      const vmPhase = getVm(cluster, namespace, vmName)?.status?.phase;
      this.samples.push({ at: Date.now(), launchers, running: phases.filter((p) => p === 'Running').length, holding: phases.filter((p) => HOLDING.has(p)).length, vmPhase });
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  async stop(): Promise<Sample[]> {
    this.#stop.abort();
    await this.#done;
    return this.samples;
  }
}

/** VM phases that would mean the VM controller stopped or restarted a VM that should run on. */
const RESTART_PHASES = new Set(['Stopped', 'Scheduling', 'Starting', 'Stopping', 'CrashLoop', 'Failed']);

/**
 * Violations of the invariant: two running guests at once, no guest for two samples in a
 * row (longer than a switch-over pause), or the VM seen stopping or starting anew.
 */
export function invariantViolations(samples: readonly Sample[]): string[] {
  const out: string[] = [];
  samples.forEach((s, i) => {
    if (RESTART_PHASES.has(s.vmPhase ?? '')) out.push(`${new Date(s.at).toISOString()}: the VM is ${s.vmPhase ?? ''}`);
    if (s.running > 1) out.push(`${new Date(s.at).toISOString()}: two launchers run the guest: ${JSON.stringify(s.launchers)}`);
    const prev = samples[i - 1];
    if (s.holding === 0 && prev !== undefined && prev.holding === 0) out.push(`${new Date(s.at).toISOString()}: no launcher holds the guest: ${JSON.stringify(s.launchers)}`);
  });
  return out;
}

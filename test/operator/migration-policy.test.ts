// End to end on the local cluster: the real operator (under its shipped RBAC, which
// must allow namespaces and migrationpolicies/status) keeps each MigrationPolicy's
// status.matchedVirtualMachines and Ready condition current as VMs, namespace labels
// and other policies change — the precedence of ADR 0085 decided by the operator and
// read back from the real API server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MigrationPolicy, type MigrationPolicyInput, type VirtualMachineInput } from '@keyvirt/crds';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, scratch, type Scratch, TEST_RUN_LABEL } from './vm-fixtures.ts';

function haltedVm(s: Scratch, name: string, labels: Record<string, string>): VirtualMachineInput {
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId, ...labels } },
    spec: { runStrategy: 'Halted', template: { memory: { size: '64Mi' } } },
  };
}

function policy(s: Scratch, name: string, spec: MigrationPolicyInput['spec']): MigrationPolicyInput {
  return { apiVersion: 'keyvirt.io/v1alpha1', kind: 'MigrationPolicy', metadata: { name: `${s.runId}-${name}`, labels: { [TEST_RUN_LABEL]: s.runId } }, spec };
}

void describe('MigrationPolicy status on the local cluster', { timeout: 5 * 60_000 }, () => {
  let cluster: TestCluster;
  let s: Scratch;
  let operator: OperatorProcess;

  function read(name: string): MigrationPolicy | undefined {
    const out = cluster.kubectl(['get', 'migrationpolicy', `${s.runId}-${name}`, '-o', 'json', '--ignore-not-found']);
    return out.trim() === '' ? undefined : MigrationPolicy.parse(JSON.parse(out));
  }

  /** Waits until the policy reports `count` VMs with that condition reason; returns its Ready message. */
  async function expectMatched(name: string, count: number, reason: string): Promise<string> {
    let seen = 'nothing';
    try {
      return await eventually(
        `MigrationPolicy ${name} to apply to ${count} VMs (${reason})`,
        () => {
          const p = read(name);
          const ready = p?.status?.conditions?.find((c) => c.type === 'Ready');
          seen = JSON.stringify(p?.status ?? null);
          return p?.status?.matchedVirtualMachines === count && ready?.reason === reason && p.status.observedGeneration === p.metadata.generation ? ready.message : undefined;
        },
        60_000,
        500,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status: ${seen}`, { cause: err });
    }
  }

  before(async () => {
    cluster = await ensureCluster();
    s = await scratch(cluster, 'kv-e2e-mp');
    cluster.kubectl(['label', 'namespace', s.namespace, 'tier=gold']);
    operator = await startSuiteOperator(cluster, s, 'mp');
    for (const [name, app] of [['web-1', 'web'], ['web-2', 'web'], ['db-1', 'db']] as const) apply(cluster, haltedVm(s, name, { app }));
  });

  after(async () => {
    await stopOperator(operator);
    cluster.kubectl(['delete', 'migrationpolicies', '-l', `${TEST_RUN_LABEL}=${s.runId}`, '--ignore-not-found']);
    await s.cleanup();
  });

  void it('a lone policy without selectors applies to every VM of the operator', async () => {
    apply(cluster, policy(s, 'all', {}));
    assert.equal(await expectMatched('all', 3, 'Applied'), 'applies to 3 VMs');
  });

  void it('a policy with more matching labels takes its VMs; the other says where they went', async () => {
    apply(cluster, policy(s, 'web', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } } }, allowAutoConverge: true }));
    apply(cluster, policy(s, 'gold-web', { selectors: { virtualMachineSelector: { matchLabels: { app: 'web' } }, namespaceSelector: { matchLabels: { tier: 'gold' } } } }));
    await expectMatched('gold-web', 2, 'Applied');
    const web = await expectMatched('web', 0, 'Overridden');
    assert.equal(web, `applies to no VM; 2 VMs it selects follow MigrationPolicy ${s.runId}-gold-web, which matches more labels or comes first by name`);
    await expectMatched('all', 1, 'Applied');
  });

  void it('a namespace label change moves VMs between policies', async () => {
    cluster.kubectl(['label', 'namespace', s.namespace, 'tier=silver', '--overwrite']);
    await expectMatched('gold-web', 0, 'NoVirtualMachines');
    await expectMatched('web', 2, 'Applied');
    cluster.kubectl(['label', 'namespace', s.namespace, 'tier=gold', '--overwrite']);
    await expectMatched('gold-web', 2, 'Applied');
  });

  void it('VM label changes and deletions are counted', async () => {
    cluster.kubectl(['label', 'virtualmachine', 'db-1', '-n', s.namespace, 'app=web', '--overwrite']);
    await expectMatched('gold-web', 3, 'Applied');
    await expectMatched('all', 0, 'Overridden');
    cluster.kubectl(['delete', 'virtualmachine', 'web-1', '-n', s.namespace, '--wait=true', '--timeout=60s']);
    await expectMatched('gold-web', 2, 'Applied');
  });

  void it('deleting the winning policy hands its VMs back', async () => {
    cluster.kubectl(['delete', 'migrationpolicy', `${s.runId}-gold-web`]);
    await expectMatched('web', 2, 'Applied');
  });
});

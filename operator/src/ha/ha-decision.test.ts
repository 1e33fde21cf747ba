import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import type { Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import type { Reachability } from '../vm/launcher-reachability.ts';
import { decideHa, type HaAction, type HaObservation } from './ha-decision.ts';
import { budgetState } from './restart-budget.ts';

function vmOf(ha: boolean, runStrategy: 'Always' | 'RerunOnFailure' | 'Manual' = 'Always'): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web', namespace: 'prod', uid: 'vm-uid' },
    spec: { runStrategy, highAvailability: { enabled: ha, priority: 10 }, template: { memory: { size: '64Mi' } } },
  });
}

const current: Pod = { metadata: { name: 'launcher-web', namespace: 'prod', uid: 'old', annotations: { 'keyvirt.io/storage-lease': 'shared' } }, spec: { containers: [], nodeName: 'n1' } };
const leaseless: Pod = { metadata: { name: 'launcher-web', namespace: 'prod', uid: 'old' }, spec: { containers: [], nodeName: 'n1' } };
const replacement: Pod = {
  metadata: { name: 'launcher-web-abc', namespace: 'prod', uid: 'new', labels: { 'keyvirt.io/ha-replacement': 'old' } },
  spec: { containers: [], nodeName: 'n2' },
};

const silent: Reachability = { kind: 'unreachable', reason: 'LauncherUnreachable', message: 'silent', fenced: false };
const notReady: Reachability = { kind: 'unreachable', reason: 'NodeUnreachable', message: 'not ready', fenced: false };
const fenced: Reachability = { kind: 'unreachable', reason: 'NodeUnreachable', message: 'fenced', fenced: true };

function launcher(phase: LauncherStatus['phase'], lease: NonNullable<LauncherStatus['lease']>['state'] | undefined): LauncherStatus {
  return { phase, ...(lease === undefined ? {} : { lease: { state: lease, generation: 2, takeover: true } }) } as LauncherStatus;
}

/** Decides `o` and asserts the action: its kind (with the reason of a refusal or a deletion), and the launcher a promotion replaces. */
function decideExpecting(o: HaObservation, want: string): HaAction {
  const a = decideHa(o);
  const got = a.kind === 'refuse' || a.kind === 'deleteReplacement' ? `${a.kind}:${a.reason}` : a.kind;
  assert.equal(got, want);
  if (a.kind === 'promote') assert.equal(a.oldUid, 'old');
  return a;
}

function observe(over: Partial<HaObservation>): HaObservation {
  return {
    vm: vmOf(true),
    wantsRunning: true,
    current,
    currentState: { kind: 'active', uid: 'old', terminating: false },
    reach: { kind: 'reachable' },
    currentHeard: true,
    replacements: [],
    deleteIssued: new Set(),
    replacementStatus: undefined,
    healthyNodes: new Set(['n1', 'n2', 'n3']),
    now: Date.parse('2026-01-01T00:10:00Z'),
    migrating: false,
    noSharedStorage: undefined,
    budget: budgetState(undefined, 0, { maxRestarts: 3, windowMs: 600_000 }),
    ...over,
  };
}

const exhausted = budgetState(JSON.stringify([1, 2, 3]), 10, { maxRestarts: 3, windowMs: 600_000 });

describe('decideHa', () => {
  const cases: { name: string; o: HaObservation; want: string; fencedClaim?: boolean }[] = [
    { name: 'healthy HA VM', o: observe({}), want: 'none' },
    { name: 'launcher silent past the threshold', o: observe({ reach: silent, currentHeard: false }), want: 'replace', fencedClaim: false },
    { name: 'node NotReady but the launcher is heard: no restart on the API view alone', o: observe({ reach: notReady, currentHeard: true }), want: 'none' },
    { name: 'node NotReady and the launcher silent', o: observe({ reach: notReady, currentHeard: false }), want: 'replace', fencedClaim: false },
    { name: 'node fenced: immediate, with nodeFenced', o: observe({ reach: fenced, currentHeard: true }), want: 'replace', fencedClaim: true },
    { name: 'VM should not run', o: observe({ reach: silent, currentHeard: false, wantsRunning: false }), want: 'none' },
    { name: 'pod terminating on a dead node (evicted): still replaced', o: observe({ reach: silent, currentHeard: false, currentState: { kind: 'active', uid: 'old', terminating: true } }), want: 'replace', fencedClaim: false },
    { name: 'pod terminating, launcher heard (graceful stop)', o: observe({ currentState: { kind: 'active', uid: 'old', terminating: true } }), want: 'none' },
    { name: 'non-HA Always VM, terminating pod on a fenced node: force-deleted', o: observe({ vm: vmOf(false), reach: fenced, currentState: { kind: 'active', uid: 'old', terminating: true } }), want: 'fenceRestart' },
    { name: 'HA launcher pod failed (self-fenced): replaced off its node', o: observe({ currentHeard: false, currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined } }), want: 'replace', fencedClaim: false },
    { name: 'HA launcher pod failed, budget exhausted', o: observe({ currentHeard: false, budget: exhausted, currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined } }), want: 'refuse:RestartBudgetExhausted' },
    { name: 'HA launcher pod succeeded (guest shut down): the run strategy decides', o: observe({ currentHeard: false, currentState: { kind: 'finished', uid: 'old', succeeded: true, terminating: false, finishedAt: undefined } }), want: 'none' },
    { name: 'HA VM that should not run, pod failed', o: observe({ wantsRunning: false, currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined } }), want: 'none' },
    { name: 'non-HA launcher pod failed: the run strategy restarts it', o: observe({ vm: vmOf(false), currentHeard: false, currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined } }), want: 'none' },
    { name: 'migration in progress', o: observe({ reach: silent, currentHeard: false, migrating: true }), want: 'none' },
    { name: 'no shared storage', o: observe({ reach: silent, currentHeard: false, noSharedStorage: 'local domain' }), want: 'refuse:NoSharedStorage' },
    { name: 'budget exhausted', o: observe({ reach: silent, currentHeard: false, budget: exhausted }), want: 'refuse:RestartBudgetExhausted' },
    { name: 'launcher started without a lease (HA enabled later), silent: not replaced', o: observe({ current: leaseless, reach: silent, currentHeard: false }), want: 'refuse:LauncherWithoutLease' },
    { name: 'launcher without a lease on a fenced node: replaced', o: observe({ current: leaseless, reach: fenced }), want: 'replace', fencedClaim: true },
    { name: 'launcher without a lease, failed: replaced (its QEMU ended)', o: observe({ current: leaseless, currentHeard: false, currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined } }), want: 'replace', fencedClaim: false },
    { name: 'no shared storage wins over the missing lease', o: observe({ current: leaseless, reach: silent, currentHeard: false, noSharedStorage: 'nfs' }), want: 'refuse:NoSharedStorage' },
    { name: 'non-HA VM, silent: stays, Unknown', o: observe({ vm: vmOf(false), reach: silent, currentHeard: false }), want: 'none' },
    { name: 'non-HA VM, node NotReady: stays', o: observe({ vm: vmOf(false), reach: notReady, currentHeard: false }), want: 'none' },
    { name: 'non-HA Always VM on a fenced node: restarted', o: observe({ vm: vmOf(false), reach: fenced }), want: 'fenceRestart' },
    { name: 'non-HA RerunOnFailure VM on a fenced node: stays', o: observe({ vm: vmOf(false, 'RerunOnFailure'), reach: fenced }), want: 'none' },
    { name: 'replacement acquiring, old still silent', o: observe({ reach: silent, currentHeard: false, replacements: [replacement], replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'wait' },
    { name: 'replacement not heard yet', o: observe({ reach: silent, currentHeard: false, replacements: [replacement] }), want: 'wait' },
    { name: 'replacement holds the lease, still booting', o: observe({ reach: silent, currentHeard: true, replacements: [replacement], replacementStatus: launcher('Starting', 'Held') }), want: 'wait' },
    { name: 'replacement holds the lease and runs', o: observe({ reach: silent, currentHeard: false, replacements: [replacement], replacementStatus: launcher('Running', 'Held') }), want: 'promote' },
    { name: 'old launcher heard again before the lease moved', o: observe({ replacements: [replacement], replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'deleteReplacement:LauncherHeardAgain' },
    { name: 'old launcher heard on a fenced node: keep the replacement', o: observe({ reach: fenced, replacements: [replacement], replacementStatus: launcher('Starting', 'Acquiring') }), want: 'wait' },
    { name: 'old pod gone: keep waiting for the replacement', o: observe({ current: undefined, currentState: { kind: 'none' }, replacements: [replacement] }), want: 'wait' },
    { name: 'old pod finished (self-fenced): keep waiting', o: observe({ currentState: { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined }, currentHeard: false, replacements: [replacement] }), want: 'wait' },
    { name: 'another pod became the launcher', o: observe({ currentState: { kind: 'active', uid: 'other', terminating: false }, replacements: [replacement] }), want: 'deleteReplacement:Superseded' },
    { name: 'VM stopped while replacing', o: observe({ wantsRunning: false, replacements: [replacement], replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'deleteReplacement:VMNotRunning' },
    { name: 'VM stopped after the replacement took over: promote, the VM controller stops it', o: observe({ wantsRunning: false, replacements: [replacement], replacementStatus: launcher('Running', 'Held') }), want: 'promote' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const a = decideExpecting(c.o, c.want);
      if (a.kind === 'replace') {
        assert.equal(a.nodeFenced, c.fencedClaim);
        assert.equal(a.failedNode, 'n1');
      }
    });
  }
});

describe('decideHa: replacements being deleted, stuck ones, and where a replacement may go', () => {
  const terminating: Pod = { ...replacement, metadata: { ...replacement.metadata, deletionTimestamp: '2026-01-01T00:09:00Z' } };
  const failedOld: HaObservation['currentState'] = { kind: 'finished', uid: 'old', succeeded: false, terminating: false, finishedAt: undefined };
  const pendingSince = (at: string, node = 'n2', uid = 'new'): Pod => ({
    metadata: { name: `launcher-web-${uid}`, namespace: 'prod', uid, creationTimestamp: at, labels: { 'keyvirt.io/ha-replacement': 'old' } },
    spec: { containers: [], nodeName: node },
    status: { phase: 'Pending' },
  });
  const stuck = pendingSince('2026-01-01T00:08:00Z');
  const young = pendingSince('2026-01-01T00:09:30Z');
  const running = { ...young, status: { phase: 'Running' } } satisfies Pod;
  const cases: { name: string; o: HaObservation; want: string; exclude?: string[]; nameSeed?: string; supersedes?: string }[] = [
    { name: 'a terminating replacement holding the lease and running is never promoted (old heard)', o: observe({ replacements: [terminating], replacementStatus: launcher('Running', 'Held') }), want: 'none' },
    { name: 'a terminating replacement does not count: the old launcher, lost, is replaced under another name', o: observe({ reach: silent, currentHeard: false, replacements: [terminating], replacementStatus: launcher('Running', 'Held') }), want: 'replace', exclude: ['n1'], nameSeed: 'new' },
    { name: 'the old pod failed while its replacement terminates: replaced off its node', o: observe({ currentHeard: false, currentState: failedOld, replacements: [terminating] }), want: 'replace', exclude: ['n1'], nameSeed: 'new' },
    { name: 'a terminating replacement is not deleted again', o: observe({ replacements: [terminating], replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'none' },
    { name: 'a replacement this process deleted, not terminating in the cache yet: not deleted again', o: observe({ replacements: [replacement], deleteIssued: new Set(['new']), replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'none' },
    { name: 'a replacement this process deleted, holding the lease: not promoted', o: observe({ reach: silent, currentHeard: false, replacements: [replacement], deleteIssued: new Set(['new']), replacementStatus: launcher('Running', 'Held') }), want: 'replace', exclude: ['n1'], nameSeed: 'new' },
    { name: 'a live replacement next to a terminating one is the one promoted', o: observe({ reach: silent, currentHeard: false, replacements: [terminating, { ...running, metadata: { ...running.metadata, uid: 'newer' } }], replacementStatus: launcher('Running', 'Held') }), want: 'promote' },
    { name: 'the first replacement goes anywhere but the failed node', o: observe({ reach: silent, currentHeard: false }), want: 'replace', exclude: ['n1'], nameSeed: 'old' },
    { name: 'a failed launcher pod on a Ready node: still excluded', o: observe({ currentHeard: false, currentState: failedOld }), want: 'replace', exclude: ['n1'], nameSeed: 'old' },
    { name: 'a replacement pending for 30 s: wait', o: observe({ currentHeard: false, currentState: failedOld, replacements: [young] }), want: 'wait' },
    { name: 'a replacement running, its launcher waiting for expiry: wait', o: observe({ currentHeard: false, currentState: failedOld, replacements: [running], replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'wait' },
    { name: 'a replacement not running 2 min after its creation: replaced elsewhere', o: observe({ currentHeard: false, currentState: failedOld, replacements: [stuck] }), want: 'replace', exclude: ['n1', 'n2'], nameSeed: 'new', supersedes: 'new' },
    { name: 'a replacement whose node turned NotReady: replaced elsewhere', o: observe({ reach: silent, currentHeard: false, replacements: [running], healthyNodes: new Set(['n1', 'n3']), replacementStatus: launcher('Starting', 'WaitingForExpiry') }), want: 'replace', exclude: ['n1', 'n2'], nameSeed: 'new', supersedes: 'new' },
    { name: 'a replacement on a bad node that holds the lease and runs: promoted', o: observe({ reach: silent, currentHeard: false, replacements: [running], healthyNodes: new Set(['n1']), replacementStatus: launcher('Running', 'Held') }), want: 'promote' },
    { name: 'a stuck replacement, the old launcher heard again: deleted, not replaced', o: observe({ replacements: [stuck] }), want: 'deleteReplacement:LauncherHeardAgain' },
    { name: 'a stuck replacement, budget exhausted: refused, kept', o: observe({ currentHeard: false, currentState: failedOld, replacements: [stuck], budget: exhausted }), want: 'refuse:RestartBudgetExhausted' },
    { name: 'a stuck replacement already deleted: its node stays excluded', o: observe({ currentHeard: false, currentState: failedOld, replacements: [stuck], deleteIssued: new Set(['new']) }), want: 'replace', exclude: ['n1', 'n2'], nameSeed: 'new' },
    { name: 'a terminating replacement that ran on a good node: its node is not excluded', o: observe({ currentHeard: false, currentState: failedOld, replacements: [{ ...terminating, status: { phase: 'Running' } }] }), want: 'replace', exclude: ['n1'], nameSeed: 'new' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const a = decideExpecting(c.o, c.want);
      if (a.kind === 'replace') {
        assert.deepEqual(a.exclude, c.exclude);
        assert.equal(a.nameSeed, c.nameSeed);
        assert.equal(a.supersedes?.metadata.uid, c.supersedes);
      }
    });
  }
});

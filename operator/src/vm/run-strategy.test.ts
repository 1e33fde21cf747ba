import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine, type RunStrategy } from '@keyvirt/crds';
import { ANNOTATION_DESIRED_STATE, ANNOTATION_REQUEST, ANNOTATION_RESTART_OF } from './names.ts';
import { consumeRequest, crashLoopDelayMs, decide, decideDeletion, type LauncherPodState } from './run-strategy.ts';

function vm(runStrategy: RunStrategy, annotations: Record<string, string> = {}): VirtualMachine {
  return VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', annotations },
    spec: { runStrategy, template: { memory: { size: '256Mi' } } },
  });
}

const none: LauncherPodState = { kind: 'none' };
const active: LauncherPodState = { kind: 'active', uid: 'pod-1', terminating: false };
const terminating: LauncherPodState = { kind: 'active', uid: 'pod-1', terminating: true };
const succeeded: LauncherPodState = { kind: 'finished', uid: 'pod-1', succeeded: true, terminating: false, finishedAt: '2026-01-01T00:00:00Z' };
const failed: LauncherPodState = { kind: 'finished', uid: 'pod-1', succeeded: false, terminating: false, finishedAt: '2026-01-01T00:00:00Z' };

void describe('decide', () => {
  const table: [RunStrategy, Record<string, string>, LauncherPodState, string][] = [
    ['Always', {}, none, 'create'],
    ['Always', {}, active, 'none'],
    ['Always', {}, succeeded, 'delete'],
    ['Always', {}, failed, 'delete'],
    ['Halted', {}, none, 'none'],
    ['Halted', {}, active, 'stop'],
    ['Halted', {}, failed, 'delete'],
    ['RerunOnFailure', {}, none, 'create'],
    ['RerunOnFailure', {}, failed, 'delete'],
    ['RerunOnFailure', {}, succeeded, 'none'],
    ['Manual', {}, none, 'none'],
    ['Manual', { [ANNOTATION_DESIRED_STATE]: 'Running' }, none, 'create'],
    ['Manual', { [ANNOTATION_DESIRED_STATE]: 'Stopped' }, active, 'stop'],
    ['Once', {}, none, 'create'],
    ['Once', { [ANNOTATION_DESIRED_STATE]: 'Stopped' }, none, 'none'],
    ['Always', {}, terminating, 'none'],
    ['Always', { [ANNOTATION_RESTART_OF]: 'pod-1' }, active, 'stop'],
    ['Always', { [ANNOTATION_RESTART_OF]: 'pod-1' }, succeeded, 'delete'],
  ];
  for (const [strategy, annotations, pod, want] of table) {
    void it(`${strategy} ${JSON.stringify(annotations)} with pod ${pod.kind}${pod.kind !== 'none' && pod.terminating ? ' (terminating)' : ''} → ${want}`, () => {
      assert.equal(decide(vm(strategy, annotations), pod).decision.action, want);
    });
  }

  void it('backs off only a failed restart, not a clean guest shutdown under Always', () => {
    const a = decide(vm('Always'), failed).decision;
    const b = decide(vm('Always'), succeeded).decision;
    assert.deepEqual(a, { action: 'delete', uid: 'pod-1', restartAfterFailure: true });
    assert.deepEqual(b, { action: 'delete', uid: 'pod-1', restartAfterFailure: false });
  });

  void it('records that a Once VM ran, so it never starts again, and clears a finished restart', () => {
    assert.deepEqual(decide(vm('Once'), none).annotations, { [ANNOTATION_DESIRED_STATE]: 'Running' });
    assert.deepEqual(decide(vm('Once', { [ANNOTATION_DESIRED_STATE]: 'Running' }), succeeded).annotations, {
      [ANNOTATION_DESIRED_STATE]: 'Stopped',
    });
    const restarted = decide(vm('Always', { [ANNOTATION_RESTART_OF]: 'old-pod' }), active);
    assert.deepEqual(restarted.annotations, { [ANNOTATION_RESTART_OF]: null });
    assert.equal(restarted.decision.action, 'none');
  });
});

void describe('consumeRequest', () => {
  void it('has nothing to do without a request', () => {
    assert.equal(consumeRequest(vm('Always'), active), undefined);
  });

  void it('start on Halted switches to Always; stop on Always/RerunOnFailure switches to Halted', () => {
    assert.equal(consumeRequest(vm('Halted', { [ANNOTATION_REQUEST]: 'start' }), none)?.runStrategy, 'Always');
    assert.equal(consumeRequest(vm('Always', { [ANNOTATION_REQUEST]: 'stop' }), active)?.runStrategy, 'Halted');
    assert.equal(consumeRequest(vm('RerunOnFailure', { [ANNOTATION_REQUEST]: 'stop' }), active)?.runStrategy, 'Halted');
  });

  void it('start and stop on Manual set the operator-owned desired state and remove the request', () => {
    const start = consumeRequest(vm('Manual', { [ANNOTATION_REQUEST]: 'start' }), none);
    assert.deepEqual(start?.annotations, { [ANNOTATION_REQUEST]: null, [ANNOTATION_DESIRED_STATE]: 'Running' });
    assert.equal(start.runStrategy, undefined);
    const stop = consumeRequest(vm('Manual', { [ANNOTATION_REQUEST]: 'stop' }), active);
    assert.deepEqual(stop?.annotations, { [ANNOTATION_REQUEST]: null, [ANNOTATION_DESIRED_STATE]: 'Stopped' });
  });

  void it('restart names the pod to replace; start after a clean shutdown replaces the finished pod', () => {
    assert.deepEqual(consumeRequest(vm('Always', { [ANNOTATION_REQUEST]: 'restart' }), active)?.annotations, {
      [ANNOTATION_REQUEST]: null,
      [ANNOTATION_RESTART_OF]: 'pod-1',
    });
    const start = consumeRequest(vm('RerunOnFailure', { [ANNOTATION_REQUEST]: 'start' }), succeeded);
    assert.equal(start?.annotations[ANNOTATION_RESTART_OF], 'pod-1');
    const after = vm('RerunOnFailure', { [ANNOTATION_RESTART_OF]: 'pod-1' });
    assert.equal(decide(after, succeeded).decision.action, 'delete');
    assert.equal(decide(after, none).decision.action, 'create');
  });

  void it('ignores a restart of a Halted VM and an unknown request with a warning', () => {
    const restart = consumeRequest(vm('Halted', { [ANNOTATION_REQUEST]: 'restart' }), none);
    assert.equal(restart?.event.type, 'Warning');
    assert.equal(restart.runStrategy, undefined);
    const bogus = consumeRequest(vm('Always', { [ANNOTATION_REQUEST]: 'reboot-please' }), active);
    assert.equal(bogus?.event.reason, 'RequestIgnored');
    assert.deepEqual(bogus.annotations, { [ANNOTATION_REQUEST]: null });
  });
});

void describe('deletion and backoff', () => {
  void it('stops the guest, removes the pod, then releases the finalizer', () => {
    assert.deepEqual(decideDeletion(active), { action: 'stop', uid: 'pod-1', why: 'deleting' });
    assert.deepEqual(decideDeletion(failed), { action: 'delete', uid: 'pod-1', restartAfterFailure: false });
    assert.deepEqual(decideDeletion(terminating), { action: 'none' });
    assert.equal(decideDeletion(none), 'release');
  });

  void it('CrashLoop delays double from 10 s and stop at 5 min', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map(crashLoopDelayMs), [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  });
});

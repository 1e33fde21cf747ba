import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { podPhase, podStatus, restartDelayMs, shouldRestart } from './pod-status.ts';
import type { ContainerRecord, PodRecord } from './pod-status.ts';

const t0 = new Date('2026-01-01T00:00:00Z');

function container(name: string, init: boolean, state: ContainerRecord['state'], done = false): ContainerRecord {
  return { name, image: 'busybox', init, state, lastTermination: undefined, restartCount: 0, ready: true, done };
}

function pod(containers: ContainerRecord[], restartPolicy = 'Always'): PodRecord {
  return {
    restartPolicy, hostIp: '10.77.0.17', podIp: '10.77.0.18', startTime: t0, sandboxReady: true,
    containers, transitions: new Map(), problem: undefined,
  };
}

const running = { kind: 'running', startedAt: t0 } as const;
const exited = (exitCode: number): ContainerRecord['state'] =>
  ({ kind: 'terminated', exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: t0, finishedAt: t0 });

describe('pod phase', () => {
  it('is Pending while an init container has not completed', () => {
    assert.equal(podPhase(pod([container('init', true, running), container('main', false, { kind: 'waiting', reason: 'PodInitializing' })])), 'Pending');
  });
  it('is Failed when an init container fails for good', () => {
    assert.equal(podPhase(pod([container('init', true, exited(1), true), container('main', false, { kind: 'waiting', reason: 'x' })], 'Never')), 'Failed');
  });
  it('is Running while a container runs, Succeeded or Failed once all are done', () => {
    assert.equal(podPhase(pod([container('a', false, running), container('b', false, exited(0), true)])), 'Running');
    assert.equal(podPhase(pod([container('a', false, exited(0), true), container('b', false, exited(0), true)])), 'Succeeded');
    assert.equal(podPhase(pod([container('a', false, exited(0), true), container('b', false, exited(2), true)])), 'Failed');
  });
  it('stays Running while a container backs off before a restart', () => {
    const c = container('a', false, { kind: 'waiting', reason: 'CrashLoopBackOff' });
    c.restartCount = 2;
    assert.equal(podPhase(pod([c])), 'Running');
  });
});

describe('pod status', () => {
  it('reports ready only when every container runs, and keeps transition times stable', () => {
    const record = pod([container('a', false, running)]);
    const first = podStatus(record, t0);
    assert.equal(first.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(first.containerStatuses?.[0]?.ready, true);
    const later = new Date(t0.getTime() + 60_000);
    const second = podStatus(record, later);
    assert.deepEqual(second.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, t0);
    (record.containers[0]).state = exited(137);
    const third = podStatus(record, later);
    assert.equal(third.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.deepEqual(third.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, later);
    assert.equal(third.containerStatuses?.[0]?.state?.terminated?.exitCode, 137);
  });
});

describe('readiness', () => {
  it('keeps a running container unready until its readiness probe passes', () => {
    const c = container('a', false, running);
    c.ready = false;
    const record = pod([c]);
    assert.equal(podStatus(record, t0).conditions?.find((x) => x.type === 'Ready')?.status, 'False');
    assert.equal(podStatus(record, t0).containerStatuses?.[0]?.ready, false);
    c.ready = true;
    assert.equal(podStatus(record, t0).conditions?.find((x) => x.type === 'Ready')?.status, 'True');
  });
});

describe('termination messages', () => {
  it('shows the message in the terminated state and keeps it in lastState across a restart', () => {
    const c = container('a', false, { kind: 'terminated', exitCode: 3, reason: 'Error', startedAt: t0, finishedAt: t0, message: 'first run failed' });
    const record = pod([c], 'OnFailure');
    assert.equal(podStatus(record, t0).containerStatuses?.[0]?.state?.terminated?.message, 'first run failed');
    c.lastTermination = c.state;
    c.state = running;
    c.restartCount = 1;
    const status = podStatus(record, t0).containerStatuses?.[0];
    assert.equal(status?.lastState?.terminated?.message, 'first run failed');
    assert.equal(status?.state?.terminated, undefined);
  });
});

describe('restart policy', () => {
  it('follows Always, OnFailure and Never', () => {
    assert.equal(shouldRestart('Always', 0, false), true);
    assert.equal(shouldRestart('OnFailure', 0, false), false);
    assert.equal(shouldRestart('OnFailure', 1, false), true);
    assert.equal(shouldRestart('Never', 1, false), false);
    assert.equal(shouldRestart('Always', 0, true), false, 'a completed init container is not rerun');
    assert.equal(shouldRestart('Never', 1, true), false);
  });
  it('backs off from 1 s doubling up to 30 s', () => {
    assert.deepEqual([1, 2, 3, 6, 10].map(restartDelayMs), [1000, 2000, 4000, 30_000, 30_000]);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import type { Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import { computeStatus, type StatusInput } from './vm-status.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', generation: 3 },
  spec: {
    runStrategy: 'Always',
    template: { memory: { size: '256Mi' }, interfaces: [{ name: 'default', macAddress: '52:54:00:12:34:56' }] },
  },
});

const pod: Pod = {
  metadata: { name: 'launcher-web-1', namespace: 'prod', uid: 'pod-1' },
  spec: { nodeName: 'node-a', containers: [{ name: 'launcher' }] },
  status: { phase: 'Running', podIP: '10.77.0.18' },
};

const launcher: LauncherStatus = {
  phase: 'Running',
  accelerator: 'tcg',
  qemu: { pid: 42, runState: 'running' },
  guestAgent: { connected: true, version: '7.2.22' },
  guest: {
    os: { id: 'debian', name: 'Debian GNU/Linux', versionId: '12', kernelRelease: '6.1.0-27-amd64' },
    hostName: 'web-1',
    interfaces: [
      { name: 'lo', ipAddresses: [{ family: 'ipv4', address: '127.0.0.1', prefix: 8 }] },
      { name: 'eth0', macAddress: '52:54:00:12:34:56', ipAddresses: [{ family: 'ipv4', address: '10.0.2.15', prefix: 24 }] },
    ],
  },
  disks: [],
  timestamps: { launcherStartedAt: '2026-01-01T00:00:00Z', phaseTransitionAt: '2026-01-01T00:00:02Z' },
};

function input(over: Partial<StatusInput>): StatusInput {
  return {
    vm,
    pod,
    podState: { kind: 'active', uid: 'pod-1', terminating: false },
    launcher,
    wantRunning: true,
    stopping: false,
    blocker: undefined,
    notMigratable: [],
    crashLoopUntil: undefined,
    startFailure: undefined,
    restartCount: undefined,
    now: '2026-01-01T00:01:00Z',
    ...over,
  };
}

void describe('computeStatus', () => {
  void it('keeps the phase of a guest that runs while its launcher has not reported yet (operator restart, promoted target)', () => {
    const cases: { previous: VirtualMachine['status']; podName: string; want: string }[] = [
      { previous: { phase: 'Running', launcherPod: 'launcher-web-1' }, podName: 'launcher-web-1', want: 'Running' },
      { previous: { phase: 'Paused', launcherPod: 'launcher-web-1' }, podName: 'launcher-web-1', want: 'Paused' },
      { previous: { phase: 'Migrating', launcherPod: 'launcher-web-1', migrationState: { targetPod: 'launcher-web-1-abc' } }, podName: 'launcher-web-1-abc', want: 'Migrating' },
      { previous: { phase: 'Running', launcherPod: 'launcher-web-1-old' }, podName: 'launcher-web-1', want: 'Starting' },
      { previous: { phase: 'Scheduling', launcherPod: 'launcher-web-1' }, podName: 'launcher-web-1', want: 'Starting' },
      { previous: undefined, podName: 'launcher-web-1', want: 'Starting' },
    ];
    for (const c of cases) {
      const s = computeStatus(input({ vm: { ...vm, status: c.previous }, pod: { ...pod, metadata: { ...pod.metadata, name: c.podName } }, launcher: undefined }));
      assert.equal(s.phase, c.want, JSON.stringify(c));
    }
  });

  void it('reports a running VM: phase, node, pod, accelerator, guest OS, pod IP for masquerade, conditions', () => {
    const s = computeStatus(input({}));
    assert.equal(s.phase, 'Running');
    assert.equal(s.ready, true);
    assert.equal(s.nodeName, 'node-a');
    assert.equal(s.launcherPod, 'launcher-web-1');
    assert.equal(s.accelerator, 'tcg');
    assert.equal(s.guestOSInfo?.versionId, '12');
    assert.equal(s.guestOSInfo?.hostname, 'web-1');
    assert.deepEqual(s.interfaces, [
      { name: 'default', macAddress: '52:54:00:12:34:56', ipAddress: '10.77.0.18', ipAddresses: ['10.0.2.15'], interfaceName: 'eth0' },
    ]);
    assert.deepEqual(
      s.conditions?.map((c) => [c.type, c.status, c.reason]),
      [
        ['Ready', 'True', 'Running'],
        ['AgentConnected', 'True', 'AgentConnected'],
        ['LiveMigratable', 'True', 'Migratable'],
        ['Paused', 'False', 'NotPaused'],
      ],
    );
    assert.equal(s.observedGeneration, 3);
  });

  void it('keeps lastTransitionTime while a condition keeps its status', () => {
    const first = computeStatus(input({}));
    const later = computeStatus(input({ vm: { ...vm, status: first }, now: '2026-01-01T00:09:00Z', notMigratable: [{ reason: 'DisksNotLiveMigratable', message: 'disk root is local' }] }));
    const time = (s: typeof first, type: string): string | undefined => s.conditions?.find((c) => c.type === type)?.lastTransitionTime;
    assert.equal(time(later, 'Ready'), '2026-01-01T00:01:00Z');
    assert.equal(time(later, 'LiveMigratable'), '2026-01-01T00:09:00Z');
    assert.equal(later.conditions?.find((c) => c.type === 'LiveMigratable')?.message, 'disk root is local');
  });

  void it('says why a VM cannot start, and touches nothing else', () => {
    const s = computeStatus(
      input({
        pod: undefined,
        podState: { kind: 'none' },
        launcher: undefined,
        blocker: { phase: 'Unschedulable', reason: 'Unschedulable', message: '0/2 nodes are available: 2 Insufficient memory.' },
      }),
    );
    assert.equal(s.phase, 'Unschedulable');
    const ready = s.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'Unschedulable');
    assert.match(ready?.message ?? '', /Insufficient memory/);
    assert.equal(s.nodeName, undefined);
    assert.equal(s.launcherPod, undefined);
  });

  void it('walks Scheduling → Starting → Stopping → Stopped / CrashLoop', () => {
    const unbound: Pod = { ...pod, spec: { containers: pod.spec.containers } };
    assert.equal(computeStatus(input({ pod: unbound, launcher: undefined })).phase, 'Scheduling');
    assert.equal(computeStatus(input({ launcher: undefined })).phase, 'Starting');
    assert.equal(computeStatus(input({ stopping: true })).phase, 'Stopping');
    const finished = { kind: 'finished', uid: 'pod-1', succeeded: false, terminating: false, finishedAt: undefined } as const;
    assert.equal(computeStatus(input({ podState: finished, crashLoopUntil: '2026-01-01T00:02:00Z' })).phase, 'CrashLoop');
    assert.equal(computeStatus(input({ podState: finished })).phase, 'Failed');
    assert.equal(computeStatus(input({ podState: { ...finished, succeeded: true }, wantRunning: false })).phase, 'Stopped');
    assert.equal(computeStatus(input({ pod: undefined, podState: { kind: 'none' }, wantRunning: false })).phase, 'Stopped');
  });
});

void describe('status truth (ADR 0064)', () => {
  const reasons = [
    { reach: { kind: 'unreachable', reason: 'NodeUnreachable', message: 'node n1 is not Ready (Unknown)', fenced: false }, reason: 'NodeUnreachable' },
    { reach: { kind: 'unreachable', reason: 'LauncherUnreachable', message: 'the launcher has not been heard from for 2.5 s', fenced: false }, reason: 'LauncherUnreachable' },
  ] as const;
  for (const r of reasons) {
    void it(`a running VM whose launcher cannot be heard is Unknown, Ready=Unknown ${r.reason}, not Running`, () => {
      const s = computeStatus(input({ reachability: r.reach }));
      assert.equal(s.phase, 'Unknown');
      assert.equal(s.ready, false);
      const ready = s.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.status, 'Unknown');
      assert.equal(ready?.reason, r.reason);
      assert.equal(ready?.message, r.reach.message);
    });
  }

  void it('a reachable launcher keeps its phase', () => {
    assert.equal(computeStatus(input({ reachability: { kind: 'reachable' } })).phase, 'Running');
  });

  void it('the HighAvailability condition comes last', () => {
    const s = computeStatus(input({ highAvailability: { type: 'HighAvailability', status: 'True', reason: 'Protected', message: 'm' } }));
    assert.equal(s.conditions?.at(-1)?.type, 'HighAvailability');
  });
});

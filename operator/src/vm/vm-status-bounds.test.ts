// A launcher reporting what a hostile guest told it (or what a guest that escaped into
// the launcher writes itself): the VM status stays far below the API server's limit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { GUEST_REPORT_LIMITS, type Status as LauncherStatus } from '@keyvirt/launcher/api';
import type { Pod } from '../runtime/core-schemas.ts';
import { computeStatus, type StatusInput } from './vm-status.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid', generation: 1 },
  spec: {
    runStrategy: 'Always',
    template: { memory: { size: '256Mi' }, guestAgent: true, interfaces: [{ name: 'default', binding: 'bridge' }] },
  },
});

const pod: Pod = {
  metadata: { name: 'launcher-web-1', namespace: 'prod', uid: 'pod-1' },
  spec: { nodeName: 'node-a', containers: [{ name: 'launcher' }] },
  status: { phase: 'Running', podIP: '10.77.0.18' },
};

const mega = 'm'.repeat(2 * 1024 * 1024);

const hostile: LauncherStatus = {
  phase: 'Paused',
  reason: mega,
  message: mega,
  accelerator: 'tcg',
  qemu: { pid: 42, runState: mega },
  guestAgent: { connected: true, version: mega },
  guest: {
    os: { id: mega, name: mega, prettyName: mega, version: mega, versionId: mega, kernelRelease: mega, machine: mega },
    hostName: mega,
    interfaces: Array.from({ length: 5000 }, (_, i) => ({
      name: `eth${i}${mega.slice(0, 1000)}`,
      macAddress: mega.slice(0, 1000),
      ipAddresses: Array.from({ length: 100 }, (_, j) => ({ family: 'ipv4' as const, address: `10.0.${j}.${i % 250}${mega.slice(0, 500)}`, prefix: 24 })),
    })),
  },
  disks: [],
  timestamps: { launcherStartedAt: '2026-01-01T00:00:00Z', phaseTransitionAt: '2026-01-01T00:00:02Z' },
};

function input(launcher: LauncherStatus): StatusInput {
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
  };
}

void describe('computeStatus with a hostile launcher report', () => {
  void it('clips every guest-reported string and list before it reaches the status', () => {
    const status = computeStatus(input(hostile));
    const bytes = Buffer.byteLength(JSON.stringify(status));
    assert.ok(bytes < 32 * 1024, `the status is ${bytes} bytes`);
    const L = GUEST_REPORT_LIMITS;
    assert.equal(status.guestOSInfo?.hostname?.length, L.string);
    assert.equal(status.guestOSInfo?.prettyName?.length, L.string);
    const addresses = status.interfaces?.[0]?.ipAddresses ?? [];
    assert.equal(addresses.length, L.addressesPerInterface);
    for (const a of addresses) assert.ok(a.length <= L.shortString);
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    assert.ok((ready?.message.length ?? 0) <= L.message);
    assert.ok((status.conditions?.find((c) => c.type === 'AgentConnected')?.message.length ?? 0) < 200);
  });
});

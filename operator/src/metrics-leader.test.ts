import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OperatorMetrics } from './metrics.ts';

void describe('operator metrics across replicas', () => {
  void it('exports VM phase counts and StorageDomain capacity only while leading', async () => {
    const m = new OperatorMetrics();
    m.addVmSource({ phaseCounts: () => new Map([['Running', 3]]), launcherOverheads: () => new Map(), overheadRevision: () => 0 });
    m.addStorageCapacitySource({
      capacities: () => [{ domain: 'shared', capacityBytes: 100, usedBytes: 85, freeBytes: 15, warningRatio: 0.8, criticalFreeBytes: 5 }],
    });
    const standby = await m.metrics();
    assert.doesNotMatch(standby, /keyvirt_vm_phase_count\{/);
    assert.doesNotMatch(standby, /keyvirt_storage_domain_free_bytes\{/);
    m.onLeadershipChange(true);
    const leader = await m.metrics();
    assert.match(leader, /keyvirt_vm_phase_count\{phase="Running"\} 3/);
    assert.match(leader, /keyvirt_storage_domain_used_bytes\{domain="shared"\} 85/);
    assert.match(leader, /keyvirt_storage_domain_warning_ratio\{domain="shared"\} 0\.8/);
    m.onLeadershipChange(false);
    assert.doesNotMatch(await m.metrics(), /keyvirt_vm_phase_count\{/);
  });
});

// The migration cache's index by the VM a migration moves. The VM, HA and migration
// controllers ask for one VM's migrations at every VM and pod event and reconcile, and
// finished migrations stay until their VM is deleted: a scan of every cached migration
// there would cost each event O(migrations) — at 10,000 VMs after a few drains, tens of
// thousands of comparisons per VM status write.
import type { VirtualMachineMigration } from '@keyvirt/crds';
import type { Informer } from '../runtime/informer.ts';
import { keyOf } from '../runtime/resource.ts';

const BY_VM = 'migration-vm';

/** Adds the index to the shared migration cache (once per process) and returns the lookup: a VM's migrations, in no order. */
export function migrationsOfVm(migrations: Informer<VirtualMachineMigration>): (vm: { namespace?: string | undefined; name: string }) => readonly VirtualMachineMigration[] {
  if (!migrations.hasIndex(BY_VM)) migrations.addIndex(BY_VM, (m) => [keyOf({ namespace: m.metadata.namespace, name: m.spec.vmName })]);
  return (vm) => migrations.byIndex(BY_VM, keyOf(vm));
}

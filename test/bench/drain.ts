// How long `kubectl drain` of a node running LiveMigrate VMs takes through the
// operator's evacuation (disruption budgets hold the evictions while evacuation
// migrations move each VM), and the longest guest pause among those migrations; next
// to it, the same guests' migration times as QEMU measured them (the work a drain
// cannot avoid), and the drain of a Shutdown VM for the stop-and-restart path.
//   npm run bench -- drain [--vms N]   (default 3 LiveMigrate VMs and 1 Shutdown VM)
import { loadavg } from 'node:os';
import { eventually } from '../support/cluster.ts';
import { drainNode, evacuationMigrations, guestUp, podsOnNode, startDrainScenario } from '../operator/drain-scenario.ts';
import { getVm, waitVm } from '../operator/vm-fixtures.ts';

function flag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1 || value > 8) throw new RangeError(`${name} must be an integer 1-8`);
  return value;
}

export async function main(args: readonly string[]): Promise<void> {
  const vms = flag(args, '--vms', 3);
  const sc = await startDrainScenario({ prefix: 'kv-bench-drain', liveMigrate: vms, shutdown: 1, targets: 2 });
  try {
    const { cluster, s, source } = sc;
    process.stdout.write(`source ${source}, targets ${sc.targets.join(', ')}; load ${loadavg()[0]?.toFixed(1) ?? '?'}\n`);
    const drain = await drainNode(cluster, source, 900);
    if (drain.exitCode !== 0) throw new Error(`kubectl drain failed (${String(drain.exitCode)}):\n${drain.output}`);
    if (podsOnNode(cluster, source).length > 0) throw new Error('pods left on the drained node');
    const migrations = await eventually(
      'every evacuation migration Succeeded with its downtime',
      () => {
        const ms = evacuationMigrations(cluster, s.namespace, source);
        return ms.length === vms && ms.every((m) => m.status?.phase === 'Succeeded' && m.status.downtimeMs !== undefined) ? ms : undefined;
      },
      60_000,
    );
    for (const m of migrations) {
      process.stdout.write(`${m.spec.vmName}: ${m.status?.sourceNode ?? '?'} → ${m.status?.targetNode ?? '?'} downtime_ms=${String(m.status?.downtimeMs)} total_ms=${String(m.status?.totalTimeMs)}\n`);
    }
    const down = sc.vms.find((v) => v.eviction === 'Shutdown');
    if (down !== undefined) {
      await waitVm(cluster, { namespace: s.namespace, name: down.name }, 'running again elsewhere', (v) => guestUp(v) && v.status?.nodeName !== source, 300_000);
    }
    const accel = getVm(cluster, s.namespace, sc.vms[0]?.name ?? '')?.status?.accelerator ?? 'unknown';
    const maxDowntime = Math.max(...migrations.map((m) => m.status?.downtimeMs ?? 0));
    const sumTotal = migrations.reduce((sum, m) => sum + (m.status?.totalTimeMs ?? 0), 0);
    process.stdout.write(`BENCH drain vms=${String(vms)} drain_ms=${String(drain.ms)} max_downtime_ms=${String(maxDowntime)} migrations_total_ms=${String(sumTotal)} shutdown_vms=1 accel=${accel}\n`);
  } finally {
    await sc.dispose();
  }
}

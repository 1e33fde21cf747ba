// The parallel limits: whether one more migration may start now, given those already
// running (each holding a slot from Scheduling until it ends), and why not.
import type { MigrationLimits } from './policy-resolution.ts';

export type Admission = { admitted: true } | { admitted: false; reason: string };

function migrations(n: number): string {
  return n === 1 ? '1 migration' : `${n} migrations`;
}

/** Admits a migration leaving `candidate.sourceNode` unless a per-node or the cluster limit is reached. */
export function admitMigration(candidate: { sourceNode: string }, running: readonly { sourceNode: string }[], limits: MigrationLimits): Admission {
  const fromNode = running.filter((m) => m.sourceNode === candidate.sourceNode).length;
  if (fromNode >= limits.parallelOutboundMigrationsPerNode) {
    const verb = fromNode === 1 ? 'leaves' : 'leave';
    return {
      admitted: false,
      reason: `${migrations(fromNode)} already ${verb} node ${candidate.sourceNode} (parallelOutboundMigrationsPerNode=${limits.parallelOutboundMigrationsPerNode})`,
    };
  }
  if (running.length >= limits.parallelMigrationsPerCluster) {
    const verb = running.length === 1 ? 'runs' : 'run';
    return {
      admitted: false,
      reason: `${migrations(running.length)} already ${verb} in the cluster (parallelMigrationsPerCluster=${limits.parallelMigrationsPerCluster})`,
    };
  }
  return { admitted: true };
}

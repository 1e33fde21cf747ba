// HA fail-over after power loss: a highly available VM (the test guest, 256 MiB, disk on
// a posix StorageDomain) runs on one of two throwaway nodes; the node is killed with its
// pods, and the clock runs until the VM's guest agent is connected again on the other
// node. detect_ms: power loss → the VM's Ready condition no longer True; restart_ms:
// from there → Running with AgentConnected on the other node; total_ms: both. The
// double-run checker watches the whole time (double_runs: rules broken). Each repetition
// also prints where the time went, from the VM's events: power loss → replacement pod
// created, → lease acquired (the expiry wait L and the claim's 2·R), → agent connected
// (pod start, disk fence, QEMU and the guest's boot). The crashed node powers back on
// between repetitions. Medians over the repetitions; status polled every 100 ms through
// kubectl (the figures carry that resolution).
//   npm run bench -- ha-failover [--reps N]
import { z } from 'zod';
import { LeaseSchema } from '../../launcher/src/api/config.ts';
import { eventually } from '../support/cluster.ts';
import { condition, getVm } from '../operator/vm-fixtures.ts';
import { guestUp, startHaScenario, type HaScenario } from '../ha/ha-scenario.ts';

const VM = 'bench-ha';

interface Sample {
  readonly detectMs: number;
  readonly restartMs: number;
  readonly totalMs: number;
  readonly doubleRuns: number;
}

function median(values: readonly number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? Number.NaN) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

const eventList = z.object({ items: z.array(z.object({ reason: z.string().optional(), eventTime: z.string().nullish(), metadata: z.object({ creationTimestamp: z.string().optional() }) })) });

/** Epoch ms of the latest event `reason` on the VM at or after `sinceMs`, if any. */
function eventAt(sc: HaScenario, reason: string, sinceMs: number): number | undefined {
  const out = sc.cluster.kubectl(['get', 'events.events.k8s.io', '-n', sc.s.namespace, '--field-selector', `regarding.name=${VM}`, '-o', 'json']);
  const times = eventList.parse(JSON.parse(out)).items
    .filter((e) => e.reason === reason)
    .map((e) => Date.parse(e.eventTime ?? e.metadata.creationTimestamp ?? ''))
    .filter((t) => Number.isFinite(t) && t >= sinceMs - 1000);
  return times.length === 0 ? undefined : Math.max(...times);
}

async function failOnce(sc: HaScenario, rep: number): Promise<Sample> {
  const before = await sc.waitRunning(VM, 'running');
  const dead = before.status?.nodeName ?? '';
  const checker = await sc.watch(VM);
  try {
    const crashed = performance.now();
    const crashedAt = Date.now();
    await sc.cluster.faults.crash(dead);
    await eventually('Ready no longer True', () => {
      const vm = getVm(sc.cluster, sc.s.namespace, VM);
      return vm !== undefined && condition(vm, 'Ready')?.status !== 'True' ? true : undefined;
    }, 120_000, 100);
    const detected = performance.now();
    await eventually('running with its agent on the other node', () => {
      const vm = getVm(sc.cluster, sc.s.namespace, VM);
      return vm !== undefined && guestUp(vm) && vm.status?.nodeName !== dead ? true : undefined;
    }, 600_000, 100);
    const up = performance.now();
    const report = await checker.stop();
    const sample = { detectMs: detected - crashed, restartMs: up - detected, totalMs: up - crashed, doubleRuns: report.violations.length };
    const since = (reason: string): string => {
      const at = eventAt(sc, reason, crashedAt);
      return at === undefined ? 'NaN' : String(at - crashedAt);
    };
    process.stdout.write(`rep=${rep} from=${dead} detect_ms=${Math.round(sample.detectMs)} restart_ms=${Math.round(sample.restartMs)} total_ms=${Math.round(sample.totalMs)} double_runs=${sample.doubleRuns}`
      + ` replacement_created_ms=${since('HAReplacementCreated')} lease_acquired_ms=${since('HALeaseAcquired')}\n`);
    for (const v of report.violations) process.stdout.write(`  double run: ${v}\n`);
    await sc.cluster.faults.restart(dead);
    return sample;
  } finally {
    await checker.stop();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Math.max(1, Number(args[repsFlag + 1] ?? 3)) : 3;
  const leaseS = LeaseSchema.parse({ path: '/var/lib/keyvirt/lease/lease' }).acquireTimeoutMs / 1000;
  const sc = await startHaScenario({ prefix: 'kv-bench-ha', nodes: 2 });
  try {
    sc.createVm(VM, { ha: true });
    const vm = await sc.waitRunning(VM, 'running');
    const accel = vm.status?.accelerator ?? 'unknown';
    const samples: Sample[] = [];
    for (let i = 0; i < reps; i++) samples.push(await failOnce(sc, i + 1));
    const m = (f: (s: Sample) => number): number => Math.round(median(samples.map(f)));
    process.stdout.write(
      `BENCH ha-failover detect_ms=${m((s) => s.detectMs)} restart_ms=${m((s) => s.restartMs)} total_ms=${m((s) => s.totalMs)}`
      + ` double_runs=${samples.reduce((n, s) => n + s.doubleRuns, 0)} lease_s=${leaseS} accel=${accel}\n`,
    );
  } finally {
    await sc.dispose();
  }
}

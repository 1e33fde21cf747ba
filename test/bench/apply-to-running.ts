// What the operator adds to a VM start: "kubectl apply → AgentConnected condition True"
// on the local cluster (operator under its shipped RBAC, launcher pod on a simulated
// node) next to "launcher start → guest agent connected" for the same guest run by a
// bare launcher process, interleaved in the same run; medians reported.
//   npm run bench -- apply-to-running [--reps N]   (default 3)
import { loadavg } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLauncher } from '../support/launcher-process.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { testGuest, type TestGuest } from '../support/guest.ts';
import { operatorKubeconfig, startOperator } from '../operator/operator-process.ts';
import { apply, getVm, scratch, testVm, TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';

const TIMEOUT_MS = 300_000;

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

async function bareLauncherMs(): Promise<{ ms: number; accel: string }> {
  const launcher = await startLauncher();
  try {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), TIMEOUT_MS);
    try {
      for await (const event of launcher.client.events(ac.signal)) {
        if (event.type === 'status' && event.status.guestAgent.connected) return { ms: Date.now() - launcher.startedAt, accel: event.status.accelerator };
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    throw new Error('bare launcher: the guest agent never connected');
  } finally {
    await launcher.dispose();
  }
}

async function applyMs(cluster: TestCluster, s: Scratch, guest: TestGuest, name: string): Promise<{ ms: number; accel: string }> {
  const started = Date.now();
  apply(cluster, testVm(s, guest, { name }));
  const deadline = started + TIMEOUT_MS;
  while (Date.now() < deadline) {
    const vm = getVm(cluster, s.namespace, name);
    if (vm?.status?.conditions?.some((c) => c.type === 'AgentConnected' && c.status === 'True') === true) {
      const ms = Date.now() - started;
      cluster.kubectl(['delete', 'vm', name, '-n', s.namespace, '--wait=true', '--timeout=180s']);
      return { ms, accel: vm.status.accelerator ?? 'unknown' };
    }
    await sleep(200);
  }
  throw new Error(`VM ${name}: AgentConnected never became True`);
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Number(args[repsFlag + 1]) : 3;
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
  const guest = await testGuest();
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-apply');
  const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  const operator = startOperator({
    kubeconfig,
    logFile: path.join(s.dir, 'operator.log'),
    identity: `bench-${s.runId}`,
    leaseName: `keyvirt-e2e-${s.runId}`,
    vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
  });
  try {
    await operator.healthPort;
    const bare: number[] = [];
    const applied: number[] = [];
    let accel = '';
    for (let i = 0; i < reps; i++) {
      const b = await bareLauncherMs();
      const a = await applyMs(cluster, s, guest, `bench-${i}`);
      bare.push(b.ms);
      applied.push(a.ms);
      accel = a.accel;
      process.stdout.write(`rep ${i + 1}/${reps}: bare_ms=${b.ms} apply_ms=${a.ms} accel=${a.accel} (bare accel=${b.accel})\n`);
    }
    const bareMs = Math.round(median(bare));
    const applyMsMedian = Math.round(median(applied));
    process.stdout.write(`apply-to-running: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
    process.stdout.write(`BENCH apply-to-running bare_ms=${bareMs} apply_ms=${applyMsMedian} overhead_ms=${applyMsMedian - bareMs} accel=${accel}\n`);
  } finally {
    operator.kill('SIGTERM');
    await Promise.race([operator.exited, sleep(20_000)]);
    operator.kill('SIGKILL');
    await s.cleanup();
    cluster.release();
  }
}

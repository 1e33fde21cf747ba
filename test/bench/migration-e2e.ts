// Live migration through Kubernetes: `kubectl apply` of a VirtualMachineMigration for
// the test guest (256 MiB, booted by the operator on the local cluster) until the
// object reports Succeeded, next to a bare QEMU migration of the same guest (same
// machine plan, target in a peer network namespace as a pod would be) in the same run.
// Reports medians over the repetitions; the KeyVirt VM hops between the two default
// nodes and back. create_to_succeeded_ms is measured by polling the object every 100 ms.
//   npm run bench -- migration-e2e [--reps N]
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { chooseAccelerator } from '../../launcher/src/qemu/accelerator.ts';
import { bareMigrate, startBareQemu, type BareQemu } from '../migration/bare-qemu.ts';
import { getMigration, migrationManifest } from '../operator/migration-observer.ts';
import { type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, pvcDisk, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { readDiskRecords, testGuest } from '../support/guest.ts';
import { launcherMachinePlan } from '../support/launcher-machine-plan.ts';
import { createSharedVm, removeSharedVm } from '../support/launcher-process.ts';
import { createPeerHost } from '../support/netns.ts';

const silent = pino({ level: 'silent' });
const VM = 'bench-mig';

interface Sample {
  readonly downtimeMs: number | null;
  readonly totalMs: number | null;
  readonly createToSucceededMs?: number;
}

function median(values: readonly (number | null | undefined)[]): number | null {
  const v = values.filter((x): x is number => typeof x === 'number').sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? null) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

function fmt(v: number | null): string {
  return v === null ? 'NaN' : String(Math.round(v));
}

async function bareSamples(reps: number): Promise<Sample[]> {
  const accelerator = (await chooseAccelerator(true)).accelerator;
  const peer = await createPeerHost();
  const vm = await createSharedVm({ memory: '256Mi', diskFormat: 'raw' });
  const samples: Sample[] = [];
  let current: BareQemu | undefined;
  try {
    const plan = await launcherMachinePlan(vm, accelerator, vm.storageDir);
    current = await startBareQemu({ plan, logger: silent });
    await eventually('bare guest counting', async () => ((await readDiskRecords(vm.disk)).length >= 3 ? true : undefined), 240_000, 500);
    for (let i = 0; i < reps; i++) {
      const toPeer = i % 2 === 0;
      const target: BareQemu = await startBareQemu({ plan, incoming: true, logger: silent, ...(toPeer ? { netnsExec: peer.exec } : {}) });
      const r = await bareMigrate(current.qmp, target.qmp, { host: toPeer ? peer.address : peer.rootAddress, downtimeLimitMs: 100, autoConverge: false, timeoutMs: 180_000 });
      if (r.status !== 'completed') {
        await target.stop();
        throw new Error(`bare migration ended ${r.status}`);
      }
      await current.stop();
      current = target;
      samples.push({ downtimeMs: r.downtimeMs, totalMs: r.totalTimeMs });
      process.stdout.write(`bare rep=${i + 1} downtime_ms=${fmt(r.downtimeMs)} total_ms=${fmt(r.totalTimeMs)}\n`);
    }
  } finally {
    await current?.stop();
    await removeSharedVm(vm);
    await peer.destroy();
  }
  return samples;
}

/** One migration of the VM by `kubectl apply`, timed from the apply to Succeeded. */
async function migrateOnce(cluster: TestCluster, s: Scratch, name: string, rep: number): Promise<Sample> {
  const started = performance.now();
  apply(cluster, migrationManifest(s, name, VM));
  let phase: string | undefined;
  while (phase !== 'Succeeded' && phase !== 'Failed' && phase !== 'Cancelled') {
    await sleep(100);
    phase = getMigration(cluster, s.namespace, name)?.status?.phase;
    if (performance.now() - started > 300_000) throw new Error(`migration ${name} did not end within 300 s`);
  }
  const createToSucceededMs = performance.now() - started;
  const st = getMigration(cluster, s.namespace, name)?.status;
  if (phase !== 'Succeeded') throw new Error(`migration ${name} ended ${phase}: ${st?.failureReason ?? ''}`);
  const sample = { downtimeMs: st?.downtimeMs ?? null, totalMs: st?.totalTimeMs ?? null, createToSucceededMs };
  process.stdout.write(`keyvirt rep=${rep} downtime_ms=${fmt(sample.downtimeMs)} total_ms=${fmt(sample.totalMs)} create_to_succeeded_ms=${fmt(createToSucceededMs)}\n`);
  await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on the target', (v) => v.status?.phase === 'Running' && v.status.launcherPod === st?.targetPod, 120_000);
  return sample;
}

async function keyvirtSamples(reps: number): Promise<{ samples: Sample[]; accel: string }> {
  const cluster = await ensureCluster();
  const guest = await testGuest();
  const s = await scratch(cluster, 'kv-bench-mig');
  const samples: Sample[] = [];
  let operator: OperatorProcess | undefined;
  try {
    await pvcDisk(cluster, s, 'bench-mig-data');
    operator = await startSuiteOperator(cluster, s, 'bench-migration');
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'bench-mig-data' }));
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined);
    const accel = vm.status?.accelerator ?? 'unknown';
    for (let i = 0; i < reps; i++) samples.push(await migrateOnce(cluster, s, `bench-${i + 1}`, i + 1));
    return { samples, accel };
  } finally {
    if (operator !== undefined) await stopOperator(operator);
    await s.cleanup();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Math.max(1, Number(args[repsFlag + 1] ?? 3)) : 3;
  const bare = await bareSamples(reps);
  const keyvirt = await keyvirtSamples(reps);
  process.stdout.write(
    `BENCH migration-e2e bare_downtime_ms=${fmt(median(bare.map((x) => x.downtimeMs)))} downtime_ms=${fmt(median(keyvirt.samples.map((x) => x.downtimeMs)))} bare_total_ms=${fmt(median(bare.map((x) => x.totalMs)))} total_ms=${fmt(median(keyvirt.samples.map((x) => x.totalMs)))} create_to_succeeded_ms=${fmt(median(keyvirt.samples.map((x) => x.createToSucceededMs)))} accel=${keyvirt.accel}\n`,
  );
}

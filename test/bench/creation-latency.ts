// VM creation latency, KubeVirt's performance method: VMs created 100 ms apart, then
// the p50 and p95 of "VM created → launcher pod Running" on kwok-simulated nodes (pods
// turn Running with a loopback address; nothing runs in them), and of "VM created → VM
// Running" for real VMs (the test guest under real QEMU in launcher pods on the local
// cluster's simulated nodes), as many as this machine holds at once (MemAvailable over
// what one such VM takes, capped by --max-real). Creations go straight to the API (a
// kubectl process per VM would not keep the 100 ms pace); the bench's own watches time
// each step.
//   npm run bench -- creation-latency [--vms N] [--nodes M] [--max-real R] [--interval-ms T]
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { VirtualMachine } from '@keyvirt/crds';
import { pino } from 'pino';
import { z } from 'zod';
import { sleepOn, systemClock } from '../../operator/src/runtime/clock.ts';
import { Informer, type KubeObject } from '../../operator/src/runtime/informer.ts';
import { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { stripUnreadMetadata } from '../../operator/src/runtime/object-trim.ts';
import { coreTypes, type ResourceType } from '../../operator/src/runtime/resource.ts';
import { ensureCluster } from '../support/cluster.ts';
import { testGuest } from '../support/guest.ts';
import { kwokVm, startKwokNodes } from '../support/kwok.ts';
import { operatorKubeconfig, startOperator } from '../operator/operator-process.ts';
import { scratch, testVm, TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';

const vmType: ResourceType = { group: 'keyvirt.io', version: 'v1alpha1', plural: 'virtualmachines', kind: 'VirtualMachine', namespaced: true };
/** What one real test VM takes: its 256 MiB guest, QEMU's own and the launcher's memory (launcher-boot's figures, rounded up). */
const REAL_VM_MIB = 256 + 160;

function flag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`);
  return v;
}

function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** Calls `onChange` for every object of `type` in `namespace` as the API server reports it. */
function follow<T extends KubeObject>(
  watched: { client: KubeClient; type: ResourceType; schema: z.ZodType<T>; namespace: string },
  signal: AbortSignal,
  onChange: (obj: T) => void,
): Informer<T> {
  const { client, type, schema, namespace } = watched;
  const informer = new Informer<T>({ client, type, schema, namespace, log: pino({ level: 'warn' }), sleep: sleepOn(systemClock), pageSize: 500, transform: stripUnreadMetadata });
  informer.addHandlers({ onAdd: onChange, onUpdate: (_old, obj) => onChange(obj) });
  void informer.run(signal);
  return informer;
}

const podSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional(), resourceVersion: z.string().optional(), labels: z.record(z.string(), z.string()).optional() }),
  status: z.object({ phase: z.string().optional() }).optional(),
});

const vmStatusSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional(), resourceVersion: z.string().optional() }),
  status: z.object({ phase: z.string().optional(), accelerator: z.string().optional() }).optional(),
});

/** Creates `manifests` `intervalMs` apart; resolves with each VM's creation time (when its POST was sent). */
async function createPaced(client: KubeClient, namespace: string, manifests: readonly { metadata: { name: string } }[], intervalMs: number): Promise<Map<string, number>> {
  const created = new Map<string, number>();
  const posts: Promise<unknown>[] = [];
  const start = Date.now();
  for (const [i, manifest] of manifests.entries()) {
    const due = start + i * intervalMs;
    if (due > Date.now()) await sleep(due - Date.now());
    created.set(manifest.metadata.name, Date.now());
    posts.push(client.create(`/apis/keyvirt.io/v1alpha1/namespaces/${namespace}/virtualmachines`, manifest));
  }
  await Promise.all(posts);
  return created;
}

async function waitAll(what: string, done: () => number, total: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (done() < total) {
    if (Date.now() > deadline) throw new Error(`${what}: only ${done()}/${total} after ${timeoutMs / 1000} s`);
    await sleep(250);
    if (Date.now() - last > 10_000) {
      last = Date.now();
      process.stdout.write(`creation-latency: ${what}: ${done()}/${total}\n`);
    }
  }
}

function summary(created: Map<string, number>, reached: Map<string, number>): { p50: number; p95: number; values: number[] } {
  const values = [...reached].map(([name, at]) => at - (created.get(name) ?? NaN)).filter((v) => Number.isFinite(v));
  return { p50: percentile(values, 50), p95: percentile(values, 95), values };
}

async function kwokRun(client: KubeClient, s: Scratch, nodesLabel: string, vms: number, intervalMs: number): Promise<{ p50: number; p95: number }> {
  const running = new Map<string, number>();
  const stop = new AbortController();
  follow({ client, type: coreTypes.pod, schema: podSchema, namespace: s.namespace }, stop.signal, (pod) => {
    const vm = pod.metadata.labels?.['keyvirt.io/vm'];
    if (vm !== undefined && pod.status?.phase === 'Running' && !running.has(vm)) running.set(vm, Date.now());
  });
  try {
    const manifests = Array.from({ length: vms }, (_, i) => kwokVm(s, `latency-${i}`, nodesLabel));
    const created = await createPaced(client, s.namespace, manifests, intervalMs);
    await waitAll('launcher pods Running on kwok nodes', () => running.size, vms, 15 * 60_000);
    return summary(created, running);
  } finally {
    stop.abort();
  }
}

async function realRun(client: KubeClient, s: Scratch, count: number, intervalMs: number): Promise<{ p50: number; accel: string; values: number[] }> {
  const guest = await testGuest();
  const running = new Map<string, number>();
  let accel = 'unknown';
  const stop = new AbortController();
  follow({ client, type: vmType, schema: vmStatusSchema, namespace: s.namespace }, stop.signal, (vm) => {
    if (vm.status?.phase === 'Running' && !running.has(vm.metadata.name)) {
      running.set(vm.metadata.name, Date.now());
      accel = vm.status.accelerator ?? accel;
    }
  });
  try {
    const manifests = Array.from({ length: count }, (_, i) => VirtualMachine.parse(testVm(s, guest, { name: `real-${i}` })));
    const created = await createPaced(client, s.namespace, manifests, intervalMs);
    await waitAll('real VMs Running', () => running.size, count, 15 * 60_000);
    const { p50, values } = summary(created, running);
    return { p50, accel, values };
  } finally {
    stop.abort();
  }
}

async function memAvailableMiB(): Promise<number> {
  const kb = Number(/^MemAvailable:\s+(\d+)/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

export async function main(args: readonly string[]): Promise<void> {
  const vms = flag(args, '--vms', 100);
  const nodeCount = Math.max(1, flag(args, '--nodes', 10));
  const maxReal = flag(args, '--max-real', 8);
  const intervalMs = flag(args, '--interval-ms', 100);
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-latency');
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const client = new KubeClient(kc, 'keyvirt-bench');
  const kubeconfig = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  const operator = startOperator({
    kubeconfig,
    logFile: path.join(s.dir, 'operator.log'),
    identity: `latency-${s.runId}`,
    leaseName: `keyvirt-e2e-${s.runId}`,
    vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
  });
  let kwok: { stop(): void } | undefined;
  try {
    await operator.healthPort;
    const nodesLabel = `nodes-${s.runId}`;
    kwok = await startKwokNodes(cluster, { label: { key: TEST_RUN_LABEL, value: nodesLabel }, count: nodeCount, namePrefix: `kwok-${s.runId}`, runPods: true, dir: s.dir });
    const simulated = await kwokRun(client, s, nodesLabel, vms, intervalMs);
    process.stdout.write(`creation-latency: ${vms} VMs ${intervalMs} ms apart: created → launcher pod Running (kwok) p50 ${simulated.p50} ms, p95 ${simulated.p95} ms\n`);
    kwok.stop();
    kwok = undefined;
    const holds = Math.floor((await memAvailableMiB()) / REAL_VM_MIB);
    const real = Math.min(holds, maxReal);
    let realFigures = { p50: NaN, accel: 'none', values: [] as number[] };
    if (real > 0) {
      realFigures = await realRun(client, s, real, intervalMs);
      process.stdout.write(`creation-latency: ${real} real VMs (the machine holds ${holds}, capped at ${maxReal}): created → Running ${realFigures.values.join(', ')} ms (${realFigures.accel})\n`);
    }
    process.stdout.write(
      `BENCH creation-latency vms=${vms} p50_ms=${simulated.p50} p95_ms=${simulated.p95} real_vms=${real} real_p50_ms=${realFigures.p50} ` +
        `real_p95_ms=${percentile(realFigures.values, 95)} accel=${realFigures.accel} interval_ms=${intervalMs}\n`,
    );
  } finally {
    kwok?.stop();
    operator.kill('SIGTERM');
    await Promise.race([operator.exited, sleep(30_000)]);
    operator.kill('SIGKILL');
    await s.cleanup();
    cluster.release();
  }
}

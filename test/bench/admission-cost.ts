// Admission cost: what KeyVirt's ValidatingAdmissionPolicies cost the API server per pod
// write, against the same writes with no KeyVirt policy, in one run on the local cluster.
// Phase A: every KeyVirt policy and binding (keyvirt-*, and those named in the file)
// deleted; phase B: the file's policies and bindings applied. Each phase is in force once
// the API server refuses a sentinel's probe (admission-policy-set.ts). Per phase, in a
// scratch namespace, N writes each, `--in-flight` at a time (pods never scheduled:
// pod-write-workloads.ts):
//   operator_create  launcher pods (the operator's renderer) created as the operator's
//                    ServiceAccount: the writes KeyVirt's pod policies validate
//   other_create     plain pods created by the cluster's administrator, no keyvirt.io label:
//                    what any other pod write pays (the policies' match conditions)
//   other_patch      a merge patch of a label (not keyvirt.io) of each plain pod
//   sum_policy_ms    the three figures' sum, B − A (robust to one window's work spilling into the next)
// Each figure is the kube-apiserver's CPU (user + system, procfs) from the workload's first
// write until the API server's CPU is back to its rate before it (measured()), per
// write, the median over the rounds; *_base_ms phase A's, *_policy_ms B − A. The phases
// alternate (A B A B for `--rounds 2`); spread_pct is the largest spread between rounds of
// one figure, over its median. The API server serves everyone else too, so a busy machine
// spreads the small figures: run it quietly, or with more rounds. At the end (and
// on any failure, SIGINT or SIGTERM) operator/deploy/rbac.yaml's policies are put back,
// with any other keyvirt-* policy found at the start.
//   npm run bench -- admission-cost [--pods N] [--policies FILE] [--in-flight K] [--rounds R]
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, KubeClient } from '../../operator/src/runtime/kube-client.ts';
import {
  applyPolicies, otherBindings, POLICY_FIELD_MANAGER, policySignature, readPolicyManifest, removePolicies, restorePolicies,
  snapshotPolicies, untilPolicySetInForce, untilTypeChecked, type PolicyObject,
} from '../support/admission-policy-set.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { runWrites } from '../support/bounded-writes.ts';
import { deleteAllPods, launcherPod, measured, plainPod, TOUCH_LABEL, type WorkloadCost } from '../support/pod-write-workloads.ts';
import { apiServerPid } from '../support/process-cpu.ts';
import { operatorKubeconfig, RBAC_MANIFEST } from '../operator/operator-process.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const WORKLOADS = ['operator_create', 'other_create', 'other_patch'] as const;
type Workload = (typeof WORKLOADS)[number];
type Phase = 'A' | 'B';
type PhaseCosts = Record<Workload, WorkloadCost>;
/** Attempts at a phase whose policies someone else rewrote meanwhile (a suite applying rbac.yaml). */
const PHASE_ATTEMPTS = 3;

export class AdmissionCostError extends Error {
  override readonly name = 'AdmissionCostError';
}

interface Options {
  readonly pods: number;
  readonly policies: string;
  readonly inFlight: number;
  readonly rounds: number;
}

function parseOptions(given: readonly string[]): Options {
  // `npm run bench -- admission-cost -- --pods 100` passes the separator through, as the other benchmarks accept.
  const args = given.filter((a) => a !== '--');
  const known = new Set(['--pods', '--policies', '--in-flight', '--rounds']);
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i] ?? '';
    if (!known.has(name)) throw new AdmissionCostError(`unknown argument ${name}; usage: npm run bench -- admission-cost [--pods N] [--policies FILE] [--in-flight K] [--rounds R]`);
    if (args[i + 1] === undefined) throw new AdmissionCostError(`${name} needs a value`);
  }
  const value = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
  const count = (name: string, fallback: number): number => {
    const raw = value(name);
    const n = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new AdmissionCostError(`${name} must be a positive integer, not ${String(raw)}`);
    return n;
  };
  return { pods: count('--pods', 2000), policies: path.resolve(value('--policies') ?? RBAC_MANIFEST), inFlight: count('--in-flight', 16), rounds: count('--rounds', 2) };
}

interface Setting {
  readonly opts: Options;
  readonly admin: KubeClient;
  readonly applier: KubeClient;
  readonly operator: KubeClient;
  readonly apiPid: number;
  readonly namespace: string;
  readonly measuredPolicies: readonly PolicyObject[];
  readonly owned: (name: string) => boolean;
  /** Aborted by SIGINT or SIGTERM: the writes stop, and the policies are put back on the way out. */
  readonly stop: AbortSignal;
}

/** An error's message and its causes' (a transport error names only the request, fetch's error not the socket's). */
const describe = (err: unknown): string => (err instanceof Error ? `${err.message}${err.cause === undefined ? '' : `: ${describe(err.cause)}`}` : String(err));

const say = (line: string): void => void process.stdout.write(`admission-cost: ${line}\n`);

/** The outcome of a dry-run creation: undefined when admitted, the refusal otherwise. */
async function dryRunRefusal(client: KubeClient, namespace: string, pod: unknown): Promise<string | undefined> {
  try {
    await client.request('POST', `/api/v1/namespaces/${namespace}/pods`, { body: pod, query: { dryRun: 'All' } });
    return undefined;
  } catch (err) {
    if (err instanceof KubeApiError && (err.statusCode === 403 || err.statusCode === 422)) return err.message;
    throw err;
  }
}

/** Puts the phase's policies in force, then shows what they refuse: a launcher pod must pass; one of another image shows the operator's pod policy. */
async function enterPhase(st: Setting, phase: Phase, tag: string): Promise<() => Promise<void>> {
  await removePolicies(st.admin, st.owned);
  if (phase === 'B') {
    await applyPolicies(st.applier, st.measuredPolicies);
    await untilTypeChecked(st.admin, st.measuredPolicies.filter((p) => p.kind === 'ValidatingAdmissionPolicy').map((p) => p.name));
  }
  const disarm = await untilPolicySetInForce(st.admin, st.namespace, tag);
  const shaped = await dryRunRefusal(st.operator, st.namespace, launcherPod(st.namespace, `probe-${tag}`));
  if (shaped !== undefined) {
    await disarm();
    throw new AdmissionCostError(`phase ${phase}: the operator's account may not create a launcher pod: ${shaped}`);
  }
  const foreign = { ...launcherPod(st.namespace, `probe-${tag}-image`) };
  const spec = { ...foreign.spec, containers: [{ name: 'launcher', image: 'registry.example.com/not-the-launcher:1' }] };
  const refusal = await dryRunRefusal(st.operator, st.namespace, { ...foreign, spec });
  say(`phase ${phase} in force; a launcher pod of another image, as the operator: ${refusal === undefined ? 'admitted' : `refused (${refusal.replace(/^POST \S+: /, '')})`}`);
  return disarm;
}

async function runWorkloads(st: Setting, tag: string): Promise<PhaseCosts> {
  const { pods, inFlight } = st.opts;
  const ns = st.namespace;
  const launchers = Array.from({ length: pods }, (_, i) => launcherPod(ns, `ac-${tag}-${i}`));
  const plain = Array.from({ length: pods }, (_, i) => plainPod(ns, `plain-${tag}-${i}`));
  const operatorCreate = await measured(st.apiPid, () => runWrites(pods, inFlight, (i) => st.operator.create(`/api/v1/namespaces/${ns}/pods`, launchers[i]), st.stop));
  const otherCreate = await measured(st.apiPid, () => runWrites(pods, inFlight, (i) => st.admin.create(`/api/v1/namespaces/${ns}/pods`, plain[i]), st.stop));
  const otherPatch = await measured(st.apiPid, () =>
    runWrites(pods, inFlight, (i) => st.admin.patch(`/api/v1/namespaces/${ns}/pods/${plain[i]?.metadata.name ?? ''}`, { metadata: { labels: { [TOUCH_LABEL]: tag } } }, 'merge'), st.stop),
  );
  return { operator_create: operatorCreate, other_create: otherCreate, other_patch: otherPatch };
}

/** One phase: its policies in force, the three workloads, the pods deleted; repeated when the policies changed under it. */
async function runPhase(st: Setting, phase: Phase, round: number): Promise<PhaseCosts> {
  for (let attempt = 1; attempt <= PHASE_ATTEMPTS; attempt++) {
    st.stop.throwIfAborted();
    const tag = `${round}${phase.toLowerCase()}${attempt}-${randomBytes(2).toString('hex')}`;
    const disarm = await enterPhase(st, phase, tag);
    let costs: PhaseCosts;
    let changed: boolean;
    const load = loadavg()[0] ?? 0;
    try {
      const before = await policySignature(st.admin, st.owned);
      costs = await runWorkloads(st, tag);
      changed = (await policySignature(st.admin, st.owned)) !== before;
    } finally {
      await disarm();
      await deleteAllPods(st.admin, st.namespace);
    }
    if (changed) {
      say(`round ${round} phase ${phase}: KeyVirt's policies were rewritten during the phase (a suite applying ${path.relative(repoRoot, RBAC_MANIFEST)}?): repeated`);
      continue;
    }
    const text = WORKLOADS.map((w) => `${w} ${perWrite(costs[w], st.opts.pods).toFixed(2)} ms (${(costs[w].wallMs / 1000).toFixed(1)} s + ${(costs[w].tailMs / 1000).toFixed(2)} s)`).join(', ');
    say(`round ${round} phase ${phase} (load ${load.toFixed(1)}-${(loadavg()[0] ?? 0).toFixed(1)}): API server CPU per write, wall time of ${st.opts.pods} + tail until the API server settled: ${text}`);
    return costs;
  }
  throw new AdmissionCostError(`phase ${phase} of round ${round}: KeyVirt's policies were rewritten during each of ${PHASE_ATTEMPTS} attempts; run it when no suite applies ${RBAC_MANIFEST}`);
}

const perWrite = (c: WorkloadCost, writes: number): number => c.apiServerCpuMs / writes;
/** The median (of two, their mean): one window that another client's burst fell into moves it least. */
const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
};

/** Which policies were measured: the start of the SHA-256 of what was applied (a file's comments and other objects aside). */
const policiesDigest = (objects: readonly PolicyObject[]): string => createHash('sha256').update(JSON.stringify(objects.map((o) => o.manifest))).digest('hex').slice(0, 12);

/** The BENCH line from every round's costs. */
function benchLine(opts: Options, measuredPolicies: readonly PolicyObject[], results: ReadonlyMap<Phase, PhaseCosts[]>, others: readonly string[], load: string): string {
  const fields: string[] = [`pods=${opts.pods}`];
  let spread = 0;
  const wall: string[] = [];
  for (const w of WORKLOADS) {
    const per = (phase: Phase): number[] => (results.get(phase) ?? []).map((c) => perWrite(c[w], opts.pods));
    const a = per('A');
    const b = per('B');
    for (const xs of [a, b]) if (xs.length > 1) spread = Math.max(spread, ((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100);
    fields.push(`${w}_ms=${median(b).toFixed(2)}`, `${w}_base_ms=${median(a).toFixed(2)}`, `${w}_policy_ms=${(median(b) - median(a)).toFixed(2)}`);
    const wallOf = (phase: Phase): string => median((results.get(phase) ?? []).map((c) => c[w].wallMs)).toFixed(0);
    wall.push(`${w}_wall_ms=${wallOf('B')}`, `${w}_base_wall_ms=${wallOf('A')}`);
  }
  // The three together: robust to work one workload leaves for the next one's window.
  const sum = (phase: Phase): number => median((results.get(phase) ?? []).map((c) => WORKLOADS.reduce((t, w) => t + perWrite(c[w], opts.pods), 0)));
  fields.push(`sum_policy_ms=${(sum('B') - sum('A')).toFixed(2)}`);
  const policies = path.relative(repoRoot, opts.policies);
  return `BENCH admission-cost ${fields.join(' ')} spread_pct=${spread.toFixed(1)} rounds=${opts.rounds} in_flight=${opts.inFlight} ${wall.join(' ')} ` +
    `policies=${policies.startsWith('..') ? opts.policies : policies} policies_sha256=${policiesDigest(measuredPolicies)} other_bindings=${others.length} load=${load} accel=none`;
}

/** The pid of the kube-apiserver behind `apiServer`, once it answers; refuses a server that does not, or whose process is not on this machine. */
export async function measurableApiServer(apiServer: TestCluster['apiServer'], admin: KubeClient): Promise<number> {
  try {
    await admin.request('GET', '/version', { timeoutMs: 10_000 });
  } catch (err) {
    throw new AdmissionCostError(`the local cluster's API server at ${apiServer.url} does not answer: ${describe(err)}`);
  }
  const pid = await apiServerPid(apiServer.port);
  if (pid === undefined) throw new AdmissionCostError(`no kube-apiserver serving port ${apiServer.port} runs on this machine: its CPU cannot be measured`);
  return pid;
}

export async function main(args: readonly string[]): Promise<void> {
  const opts = parseOptions(args);
  const measuredPolicies = await readPolicyManifest(opts.policies);
  const shipped = await readPolicyManifest(RBAC_MANIFEST);
  const names = new Set([...measuredPolicies, ...shipped].map((o) => o.name));
  const owned = (name: string): boolean => name.startsWith('keyvirt-') || names.has(name);
  let cluster: TestCluster;
  try {
    cluster = await ensureCluster();
  } catch (err) {
    throw new AdmissionCostError(`the local cluster could not be reached or brought up: ${describe(err)}`);
  }
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const admin = new KubeClient(kc, 'keyvirt-bench');
  const applier = new KubeClient(kc, POLICY_FIELD_MANAGER);
  const dir = await mkdtemp(path.join(tmpdir(), 'keyvirt-admission-cost-'));
  const namespace = `kv-bench-admission-${randomBytes(3).toString('hex')}`;
  let found: PolicyObject[] | undefined;
  let created = false;
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => stop.abort(new AdmissionCostError(`${signal}: stopped; putting the policies back`));
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    const apiPid = await measurableApiServer(cluster.apiServer, admin);
    found = await snapshotPolicies(admin, owned);
    say(`policies measured: ${opts.policies} (${measuredPolicies.filter((p) => p.kind === 'ValidatingAdmissionPolicyBinding').map((p) => p.name).join(', ')}); found in force: ${found.filter((p) => p.kind === 'ValidatingAdmissionPolicyBinding').map((p) => p.name).join(', ') || 'none'}`);
    cluster.kubectl(['create', 'namespace', namespace]);
    created = true;
    const opKc = new KubeConfig();
    opKc.loadFromFile(await operatorKubeconfig(cluster, path.join(dir, 'operator.kubeconfig')));
    const st: Setting = { opts, admin, applier, operator: new KubeClient(opKc, 'keyvirt-operator'), apiPid, namespace, measuredPolicies, owned, stop: stop.signal };
    const others = await otherBindings(admin, owned);
    say(`${opts.pods} writes per workload, ${opts.inFlight} in flight, kube-apiserver pid ${apiPid}; bindings in force in both phases: ${others.join(', ') || 'none'}`);
    const loadBefore = loadavg()[0] ?? 0;
    const results = new Map<Phase, PhaseCosts[]>([['A', []], ['B', []]]);
    for (let round = 1; round <= opts.rounds; round++) {
      for (const phase of ['A', 'B'] as const) results.get(phase)?.push(await runPhase(st, phase, round));
    }
    process.stdout.write(`${benchLine(opts, measuredPolicies, results, others, `${loadBefore.toFixed(1)}-${(loadavg()[0] ?? 0).toFixed(1)}`)}\n`);
  } finally {
    try {
      // Nothing was changed before the snapshot.
      if (found !== undefined) {
        await restorePolicies(admin, applier, owned, shipped, found);
        const kept = found.filter((f) => !shipped.some((s) => s.kind === f.kind && s.name === f.name)).map((f) => f.name);
        say(`policies put back: ${path.relative(repoRoot, RBAC_MANIFEST)}'s${kept.length > 0 ? `, and ${kept.join(', ')} as found at the start` : ''}`);
      }
    } finally {
      if (created) cluster.kubectl(['delete', 'namespace', namespace, '--wait=false', '--ignore-not-found']);
      await rm(dir, { recursive: true, force: true });
      cluster.release();
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    }
  }
}

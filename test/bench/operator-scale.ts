// Operator scale: N VMs on kwok-simulated nodes (their launcher pods are scheduled and
// bound, never run), measured from the first `kubectl apply` until every launcher pod
// is bound to a node; the operator's reconcile rate and RSS at that point.
//   npm run bench -- operator-scale [--vms N] [--nodes M]   (default 1000 VMs, 10 nodes)
// kwok gives pods loopback addresses (127.201.0.0/16), so the launcher followers'
// connection attempts never leave the machine.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../operator/src/runtime/kube-client.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { operatorKubeconfig, probe, startOperator } from '../operator/operator-process.ts';
import { scratch, TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';

const KWOK_TAINT = 'kwok.x-k8s.io/node';

/** kwok's only stage here: nodes become Ready (pods are bound by the kube-scheduler and never run). */
const KWOK_STAGES = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
        message: kwok simulates this node
        reason: KubeletReady
        status: "True"
        type: Ready
      allocatable: { cpu: "1000", memory: 4Ti, pods: "1000" }
      capacity: { cpu: "1000", memory: 4Ti, pods: "1000" }
      nodeInfo:
        kubeletVersion: kwok
`;

function flag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}

function kwokNodes(s: Scratch, count: number): unknown[] {
  return Array.from({ length: count }, (_, i) => {
    const name = `kwok-${s.runId}-${i}`;
    return {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { [KWOK_TAINT]: 'fake' },
        labels: { 'kubernetes.io/hostname': name, type: 'kwok', [TEST_RUN_LABEL]: s.runId, 'keyvirt.io/kvm': 'false' },
      },
      spec: { taints: [{ key: KWOK_TAINT, value: 'fake', effect: 'NoSchedule' }] },
      status: { allocatable: { cpu: '1000', memory: '4Ti', pods: '1000' }, capacity: { cpu: '1000', memory: '4Ti', pods: '1000' } },
    };
  });
}

function vmManifest(s: Scratch, i: number): unknown {
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name: `scale-${i}`, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: {
      runStrategy: 'Always',
      nodeSelector: { [TEST_RUN_LABEL]: s.runId },
      tolerations: [{ key: KWOK_TAINT, operator: 'Exists', effect: 'NoSchedule' }],
      template: { memory: { size: '128Mi' }, allowEmulation: true, guestAgent: false },
    },
  };
}

function boundPods(cluster: TestCluster, namespace: string): number {
  const out = cluster.kubectl(['get', 'pods', '-n', namespace, '-l', 'keyvirt.io/vm', '-o', 'jsonpath={range .items[*]}{.spec.nodeName}{"\\n"}{end}']);
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

async function reconcileCount(port: number): Promise<number> {
  const body = (await probe(port, '/metrics')).body;
  let total = 0;
  for (const m of body.matchAll(/^keyvirt_reconcile_total\{controller="virtualmachine",result="[a-z]+"\} (\d+)/gm)) total += Number(m[1]);
  return total;
}

/** Drops the VMs' finalizers in parallel (the operator is gone by then). */
async function releaseVms(cluster: TestCluster, s: Scratch, count: number): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const client = new KubeClient(kc, 'keyvirt-bench');
  for (let start = 0; start < count; start += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - start) }, (_, j) =>
        client
          .patch(`/apis/keyvirt.io/v1alpha1/namespaces/${s.namespace}/virtualmachines/scale-${start + j}`, { metadata: { finalizers: null } }, 'merge')
          .catch(() => undefined),
      ),
    );
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const vms = flag(args, '--vms', 1000);
  const nodeCount = flag(args, '--nodes', 10);
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-scale');
  let kwok: ChildProcess | undefined;
  const operatorKc = await operatorKubeconfig(cluster, path.join(s.dir, 'operator.kubeconfig'));
  const operator = startOperator({
    kubeconfig: operatorKc,
    logFile: path.join(s.dir, 'operator.log'),
    identity: `scale-${s.runId}`,
    leaseName: `keyvirt-e2e-${s.runId}`,
    vmSelector: `${TEST_RUN_LABEL}=${s.runId}`,
    extraArgs: ['--workers', '8'],
  });
  try {
    const kwokConfig = path.join(s.dir, 'kwok.yaml');
    await writeFile(kwokConfig, KWOK_STAGES);
    kwok = spawn(
      path.join(cluster.layout.binDir, 'kwok'),
      [
        `--config=${kwokConfig}`,
        `--kubeconfig=${cluster.kubeconfig}`,
        '--node-lease-duration-seconds=40',
        `--manage-nodes-with-label-selector=${TEST_RUN_LABEL}=${s.runId}`,
        '--cidr=127.201.0.0/16',
        '--node-ip=127.0.0.1',
        '--server-address=127.0.0.1:0',
      ],
      { stdio: ['ignore', 'ignore', openSync(path.join(s.dir, 'kwok.log'), 'a')] },
    );
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: kwokNodes(s, nodeCount) }));
    await eventually(
      'kwok nodes Ready',
      () => {
        const ready = cluster.kubectl(['get', 'nodes', '-l', `${TEST_RUN_LABEL}=${s.runId}`, '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
        return ready.split(' ').filter((r) => r === 'True').length === nodeCount ? true : undefined;
      },
      120_000,
    );
    process.stdout.write(`operator-scale: ${nodeCount} kwok nodes Ready\n`);
    const port = await operator.healthPort;
    const before = await reconcileCount(port);
    const started = Date.now();
    for (let i = 0; i < vms; i += 100) {
      const items = Array.from({ length: Math.min(100, vms - i) }, (_, j) => vmManifest(s, i + j));
      cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    }
    let bound = 0;
    while (bound < vms) {
      if (Date.now() - started > 30 * 60_000) throw new Error(`only ${bound}/${vms} launcher pods bound after 30 min`);
      await sleep(2000);
      bound = boundPods(cluster, s.namespace);
      process.stdout.write(`operator-scale: ${bound}/${vms} launcher pods bound after ${Date.now() - started} ms\n`);
    }
    const allPodsMs = Date.now() - started;
    const reconciles = (await reconcileCount(port)) - before;
    const rss = await rssMiB(operator.pid);
    process.stdout.write(`operator-scale: ${vms} VMs on ${nodeCount} kwok nodes; ${reconciles} reconciles\n`);
    process.stdout.write(
      `BENCH operator-scale vms=${vms} all_pods_ms=${allPodsMs} reconciles_per_s=${(reconciles / (allPodsMs / 1000)).toFixed(1)} operator_rss_mib=${rss.toFixed(1)}\n`,
    );
  } finally {
    operator.kill('SIGKILL');
    await operator.exited;
    await releaseVms(cluster, s, vms);
    kwok?.kill('SIGTERM');
    try {
      cluster.kubectl(['delete', 'virtualmachines', '--all', '-n', s.namespace, '--wait=false']);
      cluster.kubectl(['delete', 'nodes', '-l', `${TEST_RUN_LABEL}=${s.runId}`, '--wait=false', '--ignore-not-found']);
    } finally {
      await s.cleanup();
    }
    cluster.release();
  }
}
